"""The VAE decoder's incremental interface (init_state/decode_chunk), which the worker uses to hand
video frames to the encoder while later latent frames are still being decoded: chunk by chunk it
gives forward's video bit for bit when it chunks as forward does (1 latent frame, then the
manifest's vae.decode_chunk_frames at a time), scripted and after save/load as in a bundle.

Run from the repository root: python -m pytest tests/exporter/test_vae_streaming.py. CPU; the CUDA
cases skip without a GPU."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "worker" / "exporter"))

from radial_export.bundle import TinyConfig, bundle_manifest  # noqa: E402
from radial_export.vae import AutoencoderKLWanDecoder, VAEConfig  # noqa: E402
from conftest import run_exporter  # noqa: E402

# As the worker runs on CPU (and test_export.py): TensorExpr's fused loops run single-threaded.
torch._C._jit_set_texpr_fuser_enabled(False)

Z_DIM = 4
LATENT_HW = (2, 4)  # not square, so that height and width cannot be swapped unnoticed
# Wan's layout (three upsampling levels, two of them temporal, attention in the middle block) at a
# size that scripts in about a second and decodes in a fraction of one.
SMALL = VAEConfig(base_dim=8, z_dim=Z_DIM, dim_mult=(1, 2, 2, 2), num_res_blocks=1,
                  temperal_downsample=(False, True, True),
                  latents_mean=(-0.3, 0.1, 0.2, -0.05), latents_std=(0.7, 1.1, 0.9, 1.3))
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]
DTYPES = [torch.float32, torch.bfloat16]
JIT_ERRORS = (RuntimeError, torch.jit.Error)  # scripted code raises torch.jit.Error


def small_vae(decode_chunk_frames: int, dtype: torch.dtype, device: str) -> AutoencoderKLWanDecoder:
    torch.manual_seed(decode_chunk_frames)
    config = dataclasses.replace(SMALL, decode_chunk_frames=decode_chunk_frames)
    vae = AutoencoderKLWanDecoder(config).eval()
    with torch.no_grad():  # default initialisation leaves the norms' gammas at one
        for parameter in vae.parameters():
            parameter.add_(torch.randn(parameter.shape) * 0.05)
    return vae.to(device=device, dtype=dtype)


_MODULES = {}


def module(kind: str, decode_chunk_frames: int, dtype: torch.dtype, device: str, tmp_dir: Path,
           fresh: bool = False):
    """The eager module, the scripted one, or that after torch.jit.save/load (what the worker
    loads); built once per key unless `fresh` (a module no call has warmed up yet)."""
    key = (kind, decode_chunk_frames, dtype, device)
    if fresh:
        _MODULES.pop(key, None)
    if key not in _MODULES and kind == "eager":
        _MODULES[key] = small_vae(decode_chunk_frames, dtype, device)
    elif key not in _MODULES:
        scripted = torch.jit.script(small_vae(decode_chunk_frames, dtype, device))
        if kind == "loaded":
            path = tmp_dir / f"vae_{decode_chunk_frames}_{str(dtype)[6:]}_{device}.pt"
            torch.jit.save(scripted, str(path))
            scripted = torch.jit.load(str(path), map_location=device)
        _MODULES[key] = scripted
    return _MODULES[key]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The convolutions here are too small to share: on two busy cores OpenMP's spinning threads
    cost ten times the CPU time of one thread. Restored for the other test files of a session."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vae_streaming")


def latents(frames: int, dtype=torch.float32, device="cpu", seed=0, batch=1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, Z_DIM, frames, *LATENT_HW, generator=gen)
    return z.to(device=device, dtype=dtype)


def decode_in_chunks(vae, z, sizes):
    """init_state, then decode_chunk over consecutive chunks of the given sizes; the videos."""
    state = vae.init_state(z)
    videos, start = [], 0
    for size in sizes:
        video, state = vae.decode_chunk(z[:, :, start:start + size], state)
        videos.append(video)
        start += size
    assert start == z.size(2)
    return videos


def forward_chunks(frames: int, decode_chunk_frames: int):
    """The chunk sizes forward uses: 1, then decode_chunk_frames at a time."""
    rest = frames - 1
    return [1] + [decode_chunk_frames] * (rest // decode_chunk_frames) + (
        [rest % decode_chunk_frames] if rest % decode_chunk_frames else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "bfloat16"])
@pytest.mark.parametrize("decode_chunk_frames", [1, 2])
@pytest.mark.parametrize("kind", ["scripted", "loaded"])
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_chunked_decode_equals_forward(kind, frames, decode_chunk_frames, dtype, device, tmp_dir):
    # The worker's fuser setting: on for CUDA, off for CPU. On CUDA the TensorExpr fuser fuses the
    # elementwise chains only once a method is past its profiling run(s) for the shapes it sees, and
    # a fused chain rounds differently from the unfused one (forward's own first call differs from
    # its later ones in bfloat16): there a fresh module is warmed up on these inputs first and the
    # later, fused, calls are compared. On CPU every call is.
    fuser = torch._C._jit_texpr_fuser_enabled()
    torch._C._jit_set_texpr_fuser_enabled(device == "cuda")
    warmup = 2 if device == "cuda" else 0
    try:
        vae = module(kind, decode_chunk_frames, dtype, device, tmp_dir, fresh=device == "cuda")
        z = latents(frames, dtype, device, seed=frames)
        sizes = forward_chunks(frames, decode_chunk_frames)
        with torch.no_grad():
            for run in range(warmup + 2):
                expected = vae(z)
                videos = decode_in_chunks(vae, z, sizes)
                if run < warmup:
                    continue
                # 1 video frame from the first latent frame, temporal_factor (4) from each later.
                assert [video.size(2) for video in videos] == [1] + [4 * size for size in sizes[1:]]
                video = torch.cat(videos, dim=2)
                assert video.dtype == dtype and video.device.type == device
                assert video.shape == (1, 3, 4 * (frames - 1) + 1, 8 * LATENT_HW[0],
                                       8 * LATENT_HW[1])
                assert torch.equal(video, expected), f"call {run + 1}"
                assert video.abs().max() <= 1.0  # clamped
                assert video.float().std() > 0.01  # not a constant
    finally:
        torch._C._jit_set_texpr_fuser_enabled(fuser)


def test_other_chunkings_agree_to_rounding(tmp_dir):
    # A caller may chunk differently from forward (here 1, 3, 1 against forward's 1, 2, 2): the
    # same video to float rounding, because each causal convolution sees the same frames.
    vae = module("scripted", 2, torch.float32, "cpu", tmp_dir)
    z = latents(5, seed=11)
    with torch.no_grad():
        expected = vae(z)
        video = torch.cat(decode_in_chunks(vae, z, [1, 3, 1]), dim=2)
    torch.testing.assert_close(video, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["eager", "loaded"])
def test_state_is_per_stream_and_the_given_list_is_unchanged(kind, tmp_dir):
    # Two decodes interleaved on one module do not see each other; decode_chunk leaves the list it
    # was given as it was (eagerly the list is the caller's own object, as a c10::List is for the
    # C++ caller; a scripted call from Python converts it), so a state can be decoded from twice.
    vae = module(kind, 2, torch.float32, "cpu", tmp_dir)  # forward decodes 3 frames as 1 + 2
    a, b = latents(3, seed=1), latents(3, seed=2, batch=2)
    with torch.no_grad():
        state_a, state_b = vae.init_state(a), vae.init_state(b)
        first_a, state_a = vae.decode_chunk(a[:, :, :1], state_a)
        first_b, state_b = vae.decode_chunk(b[:, :, :1], state_b)
        kept = list(state_a)
        second_a, next_a = vae.decode_chunk(a[:, :, 1:], state_a)
        assert all(x is y for x, y in zip(state_a, kept))
        again_a, _ = vae.decode_chunk(a[:, :, 1:], state_a)
        second_b, _ = vae.decode_chunk(b[:, :, 1:], state_b)
        assert torch.equal(again_a, second_a)
        assert torch.equal(torch.cat([first_a, second_a], dim=2), vae(a))
        assert torch.equal(torch.cat([first_b, second_b], dim=2), vae(b))
        assert len(next_a) == len(state_a) and all(t.numel() > 0 for t in next_a)


def test_init_state_is_empty_tensors_of_the_latents_dtype(tmp_dir):
    vae = module("loaded", 1, torch.bfloat16, "cpu", tmp_dir)
    state = vae.init_state(latents(3, torch.bfloat16))
    assert len(state) > 0
    assert all(t.numel() == 0 and t.dtype == torch.bfloat16 and t.device.type == "cpu"
               for t in state)


@pytest.mark.parametrize("kind", ["scripted", "loaded"])
def test_bad_chunks_are_refused_naming_the_shapes(kind, tmp_dir):
    vae = module(kind, 1, torch.float32, "cpu", tmp_dir)
    z = latents(3)
    with torch.no_grad():
        with pytest.raises(JIT_ERRORS, match=r"got shape \[1, 4, 2, 2, 4\], expected 1 latent "
                                             r"frame in the first chunk"):
            vae.decode_chunk(z[:, :, :2], vae.init_state(z))
        with pytest.raises(JIT_ERRORS, match=r"got shape \[1, 16, 1, 2, 4\], expected \[B, 4, "):
            vae.decode_chunk(torch.zeros(1, 16, 1, *LATENT_HW), vae.init_state(z))
        with pytest.raises(JIT_ERRORS,
                           match=r"got shape \[1, 4, 0, 2, 4\], expected \[B, 4, f >= 1"):
            vae.decode_chunk(z[:, :, :0], vae.init_state(z))
        _, state = vae.decode_chunk(z[:, :, :1], vae.init_state(z))
        with pytest.raises(JIT_ERRORS,
                           match=r"got shape \[1, 4, 1, 4, 4\], expected \[1, 4, f, 2, 4\]"):
            vae.decode_chunk(torch.zeros(1, Z_DIM, 1, 4, 4), state)
        with pytest.raises(JIT_ERRORS, match=r"got bfloat16 on cpu, expected the state's float32"):
            vae.decode_chunk(z[:, :, 1:].bfloat16(), state)
        with pytest.raises(JIT_ERRORS, match=r"state: got 2 tensors, expected "):
            vae.decode_chunk(z[:, :, 1:], state[:2])
        with pytest.raises(JIT_ERRORS, match=r"latents: got shape \[1, 4, 3, 2\], expected"):
            vae(z[..., 0])


def test_decode_chunk_frames_must_be_positive():
    with pytest.raises(ValueError, match="decode_chunk_frames: got 0, expected >= 1"):
        AutoencoderKLWanDecoder(dataclasses.replace(SMALL, decode_chunk_frames=0))
    config = TinyConfig()
    with pytest.raises(ValueError, match="decode_chunk_frames: got 0, expected an integer >= 1"):
        bundle_manifest(name="x", dtype="float32", weights={}, dit=config.dit,
                        text_encoder=config.text_encoder,
                        tokenizer={"pad_id": 0, "eos_id": 1, "unk_id": 2, "max_length": 8,
                                   "vocab_size": 700},
                        vae=dataclasses.replace(config.vae, decode_chunk_frames=0),
                        sampler={}, limits={}, defaults={}, radial={})


def test_tiny_bundle_decodes_incrementally_by_its_manifest(tmp_path):
    # What the worker does: the bundle's vae_decoder.pt chunked by manifest vae.decode_chunk_frames.
    run_exporter("--tiny", "--out", tmp_path)
    chunk = json.loads((tmp_path / "manifest.json").read_text())["vae"]["decode_chunk_frames"]
    assert chunk == TinyConfig().vae.decode_chunk_frames == 4
    vae = torch.jit.load(str(tmp_path / "vae_decoder.pt"))
    z = torch.randn(1, 16, 6, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        videos = decode_in_chunks(vae, z, forward_chunks(6, chunk))
        assert [video.size(2) for video in videos] == [1, 16, 4]
        assert torch.equal(torch.cat(videos, dim=2), vae(z))
