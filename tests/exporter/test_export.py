"""The tiny bundle that radial_export writes: files, manifest, the three TorchScript modules at the
demo size, the tokenizer's pinned ids, and determinism. CPU only.

Run from the repository root: python -m pytest tests/exporter (the op library comes from
$RADIAL_OPS_LIBRARY, else build/kernels/libradial_ops.so)."""

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
EXPORTER = REPO / "worker" / "exporter"
sys.path.insert(0, str(EXPORTER))

from radial_export.bundle import TinyConfig, build_tiny_modules  # noqa: E402
from radial_export.ops import load_radial_ops  # noqa: E402
from radial_export.tokenizer import TEST_PROMPTS, encode  # noqa: E402
from conftest import run_exporter  # noqa: E402

load_radial_ops()
# What the worker should do on CPU too: TensorExpr's fused loops run single-threaded there.
torch._C._jit_set_texpr_fuser_enabled(False)

CONFIG = TinyConfig()
BATCH = 2
LATENT = (5, 16, 16)  # the default 17 x 128 x 128 video
MODULE_FILES = ("dit.pt", "text_encoder.pt", "vae_decoder.pt")


def export(out: Path, seed: int) -> Path:
    """Runs the command line as a user would (it pins PYTHONHASHSEED itself)."""
    run_exporter("--tiny", "--out", out, "--seed", seed)
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return export(tmp_path_factory.mktemp("bundle"), seed=0)


@pytest.fixture(scope="module")
def manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


@pytest.fixture(scope="module")
def eager():
    dit, text_encoder, vae = build_tiny_modules(CONFIG, seed=0)
    return {"dit": dit, "text_encoder": text_encoder, "vae": vae}


@pytest.fixture(scope="module")
def scripted(bundle):
    return {name: torch.jit.load(str(bundle / f"{name}.pt"))
            for name in ("dit", "text_encoder", "vae_decoder")}


def dit_inputs(seed=0, latent=LATENT, text_length=64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((BATCH, 16) + tuple(latent), generator=gen)
    t = torch.tensor([999.0, 312.5])
    context = torch.randn(BATCH, text_length, CONFIG.text_dim, generator=gen)
    return x, t, context


def call_dit(module, inputs, dense, dense_layers=0, decay=1.0, sink=True, block=64):
    with torch.no_grad():
        return module(*inputs, dense, dense_layers, decay, sink, block)


# ---- bundle and manifest ----

def test_bundle_files(bundle, manifest):
    for name in MODULE_FILES + ("tokenizer.model", "tokenizer_test_vectors.json", "manifest.json"):
        assert (bundle / name).is_file(), name
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == entry["sha256"], name


def test_manifest_schema(manifest):
    assert manifest["format_version"] == 1
    assert manifest["name"] == "wan2.1-tiny"
    assert manifest["architecture"] == "wan2.1"
    assert manifest["dtype"] == "float32"
    dit = manifest["dit"]
    assert dit["file"] == "dit.pt"
    assert (dit["in_channels"], dit["out_channels"], dit["patch_size"]) == (16, 16, [1, 2, 2])
    assert dit["num_layers"] == CONFIG.dit.num_layers and dit["num_heads"] == 2
    assert dit["head_dim"] == 64 and dit["freq_dim"] == 256 and dit["ffn_dim"] == CONFIG.dit.ffn_dim
    assert dit["text_dim"] == manifest["text_encoder"]["dim"] == CONFIG.text_dim
    assert manifest["text_encoder"] == {**manifest["text_encoder"], "file": "text_encoder.pt",
                                        "max_length": 64}
    tok = manifest["tokenizer"]
    assert (tok["type"], tok["file"], tok["pad_id"], tok["eos_id"], tok["max_length"]) == (
        "sentencepiece", "tokenizer.model", 0, 1, 64)
    vae = manifest["vae"]
    assert (vae["file"], vae["latent_channels"], vae["temporal_factor"], vae["spatial_factor"]) == (
        "vae_decoder.pt", 16, 4, 8)
    assert len(vae["latents_mean"]) == len(vae["latents_std"]) == 16
    assert min(vae["latents_std"]) > 0
    sampler = manifest["sampler"]
    assert sampler["name"] == "flow_euler" and sampler["num_train_timesteps"] == 1000
    assert sampler["shift"] > 0 and 1 <= sampler["steps"] <= 100 and sampler["guidance"] >= 0
    assert manifest["limits"] == {
        "width": {"min": 64, "max": 512, "multiple": 16},
        "height": {"min": 64, "max": 512, "multiple": 16},
        "frames": {"min": 1, "max": 81, "step": 4},
        "steps": {"min": 1, "max": 100},
        "guidance": {"min": 0.0, "max": 20.0},
        "prompt_max_chars": 2000}
    defaults = manifest["defaults"]
    assert (defaults["width"], defaults["height"], defaults["frames"], defaults["fps"]) == (
        128, 128, 17, 16)
    assert defaults["negative_prompt"]
    assert manifest["radial"] == {"decay": 1.0, "sink": True, "block": 64, "dense_layers": 1,
                                  "dense_steps": 1, "dense_last_steps": 0}


def test_default_size_fits_the_radial_tile(manifest):
    # The mask keeps nothing in a frame shorter than block/3 tokens, so the default video must give
    # at least `block` tokens per latent frame.
    d, v, p = manifest["defaults"], manifest["vae"], manifest["dit"]["patch_size"]
    tokens_per_frame = (d["height"] // v["spatial_factor"] // p[1]) * (d["width"] // v["spatial_factor"] // p[2])
    assert tokens_per_frame >= manifest["radial"]["block"]
    assert (d["frames"] - 1) % v["temporal_factor"] == 0


# ---- DiT ----

@pytest.mark.parametrize("name,file", [("dit", "dit"), ("text_encoder", "text_encoder"),
                                       ("vae", "vae_decoder")])
def test_weights_equal_the_eager_model(scripted, eager, name, file):
    # A scripted module's state dict also lists buffers that are non-persistent in eager mode
    # (RoPE tables, latent statistics): their values travel in the .pt too.
    loaded = scripted[file].state_dict()
    reference = dict(eager[name].state_dict())
    reference.update(dict(eager[name].named_buffers()))
    assert set(loaded) == set(reference)
    for key, value in reference.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("latent", [LATENT, (1, 8, 8), (3, 12, 20)])
def test_dit_dense_matches_eager_reference(scripted, eager, latent):
    inputs = dit_inputs(latent=latent, text_length=64 if latent == LATENT else 7)
    out = call_dit(scripted["dit"], inputs, dense=True)
    assert out.shape == (BATCH, 16) + tuple(latent) and out.dtype == torch.float32
    reference = call_dit(eager["dit"], inputs, dense=True)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all() and out.std() > 0.05


def test_dit_radial_differs_from_dense_and_is_finite(scripted):
    inputs = dit_inputs()
    dense = call_dit(scripted["dit"], inputs, dense=True)
    radial = call_dit(scripted["dit"], inputs, dense=False, dense_layers=1)
    assert torch.isfinite(radial).all()
    assert (radial - dense).abs().max() > 1e-3


def test_dit_dense_layers(scripted, eager):
    inputs = dit_inputs()
    layers = CONFIG.dit.num_layers
    dense = call_dit(scripted["dit"], inputs, dense=True)
    all_dense_layers = call_dit(scripted["dit"], inputs, dense=False, dense_layers=layers)
    torch.testing.assert_close(all_dense_layers, dense, rtol=0, atol=0)
    one = call_dit(scripted["dit"], inputs, dense=False, dense_layers=1)
    none = call_dit(scripted["dit"], inputs, dense=False, dense_layers=0)
    assert (one - none).abs().max() > 1e-4
    torch.testing.assert_close(one, call_dit(eager["dit"], inputs, dense=False, dense_layers=1),
                               rtol=1e-5, atol=1e-5)


def test_dit_conditions_on_timestep_and_text(scripted):
    x, t, context = dit_inputs()
    base = call_dit(scripted["dit"], (x, t, context), dense=True)
    other_t = call_dit(scripted["dit"], (x, t.flip(0), context), dense=True)
    other_text = call_dit(scripted["dit"], (x, t, context.flip(0)), dense=True)
    assert (base - other_t).abs().max() > 1e-3
    assert (base - other_text).abs().max() > 1e-3


def test_dit_rejects_bad_shapes(scripted):
    x, t, context = dit_inputs()
    with pytest.raises(torch.jit.Error, match="expected multiples of the patch size"):
        call_dit(scripted["dit"], (x[..., :15], t, context), dense=True)
    with pytest.raises(torch.jit.Error, match="timestep"):
        call_dit(scripted["dit"], (x, t[:1], context), dense=True)


# ---- text encoder ----

def text_batch():
    ids = torch.zeros(BATCH, 64, dtype=torch.long)
    mask = torch.zeros(BATCH, 64, dtype=torch.long)
    ids[0, :6] = torch.tensor([263, 262, 348, 344, 658, 1])
    mask[0, :6] = 1
    ids[1, :] = torch.arange(3, 67)
    ids[1, 63] = 1
    mask[1, :] = 1
    return ids, mask


def test_text_encoder_shape_and_zero_padding(scripted, eager):
    ids, mask = text_batch()
    with torch.no_grad():
        out = scripted["text_encoder"](ids, mask)
        reference = eager["text_encoder"](ids, mask)
    assert out.shape == (BATCH, 64, CONFIG.text_dim) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    assert torch.all(out[0, 6:] == 0)
    assert torch.all(out[0, :6].abs().sum(-1) > 0) and torch.all(out[1].abs().sum(-1) > 0)


def test_text_encoder_ignores_what_is_under_padding(scripted):
    ids, mask = text_batch()
    changed = ids.clone()
    changed[0, 6:] = 77  # different ids at masked positions
    with torch.no_grad():
        a = scripted["text_encoder"](ids, mask)
        b = scripted["text_encoder"](changed, mask)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_text_encoder_state_dict_names(scripted):
    names = set(scripted["text_encoder"].state_dict())
    assert {"shared.weight", "encoder.embed_tokens.weight", "encoder.final_layer_norm.weight",
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight",
            "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"} <= names


# ---- VAE decoder ----

def test_vae_decode_demo_size(scripted):
    latents = torch.randn((1, 16) + LATENT, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        video = scripted["vae_decoder"](latents)
    assert video.shape == (1, 3, 17, 128, 128) and video.dtype == torch.float32
    assert video.min() >= -1.0 and video.max() <= 1.0
    assert video.std() > 0.05  # noise-like, not constant
    assert video.diff(dim=2).abs().mean() > 0.01  # frames differ


def test_vae_chunking_does_not_change_the_video(scripted, eager):
    # Frame by frame (diffusers' order) gives the same video as the bundle's chunks of 4.
    latents = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    vae = eager["vae"]
    saved = vae.decode_chunk_frames
    vae.decode_chunk_frames = 1
    try:
        with torch.no_grad():
            frame_by_frame = vae(latents)
    finally:
        vae.decode_chunk_frames = saved
    with torch.no_grad():
        video = scripted["vae_decoder"](latents)
    torch.testing.assert_close(video, frame_by_frame, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("latent_frames,video_frames", [(1, 1), (2, 5)])
def test_vae_frame_counts(scripted, latent_frames, video_frames):
    latents = torch.randn(1, 16, latent_frames, 8, 12)
    with torch.no_grad():
        video = scripted["vae_decoder"](latents)
    assert video.shape == (1, 3, video_frames, 64, 96)


def test_vae_is_causal(scripted):
    # Changing the last latent frame leaves every video frame before its four untouched.
    latents = torch.randn((1, 16) + LATENT, generator=torch.Generator().manual_seed(4))
    changed = latents.clone()
    changed[:, :, -1] += 1.0
    with torch.no_grad():
        a = scripted["vae_decoder"](latents)
        b = scripted["vae_decoder"](changed)
    torch.testing.assert_close(a[:, :, :13], b[:, :, :13], rtol=0, atol=1e-6)
    assert (a[:, :, 13:] - b[:, :, 13:]).abs().max() > 1e-3


# ---- tokenizer ----

# Pinned ids (eos included, padding left out) of the tokenizer trained from corpus.txt. A change
# here means the bundle's tokenizer changed: the C++ tokenizer test reads the same cases from
# tokenizer_test_vectors.json.
PINNED = {
    "A red fox trots across a snowy field at dawn.":
        [263, 262, 348, 344, 658, 295, 318, 349, 259, 307, 259, 335, 272, 334, 259, 271, 319, 578,
         261, 1],
    "a cat sleeps on a windowsill": [259, 389, 271, 494, 260, 274, 259, 519, 365, 1],
    "Café crème on a café terrace in Zürich":
        [353, 289, 340, 198, 172, 282, 285, 198, 171, 634, 274, 259, 389, 340, 198, 172, 262, 345,
         422, 372, 266, 262, 93, 198, 191, 285, 367, 419, 1],
    "一只猫在窗台上睡觉":
        [262, 231, 187, 131, 232, 146, 173, 234, 143, 174, 232, 159, 171, 234, 173, 154, 232, 146,
         179, 231, 187, 141, 234, 160, 164, 235, 170, 140, 1],
    "": [1],
}


@pytest.fixture(scope="module")
def vectors(bundle):
    return json.loads((bundle / "tokenizer_test_vectors.json").read_text(encoding="utf-8"))


def test_tokenizer_pinned_ids(vectors):
    cases = {case["prompt"]: case for case in vectors["cases"]}
    for prompt, ids in PINNED.items():
        case = cases[prompt]
        assert case["ids"] == ids + [0] * (64 - len(ids)), prompt
        assert case["attention_mask"] == [1] * len(ids) + [0] * (64 - len(ids)), prompt


def test_tokenizer_vectors_match_sentencepiece(bundle, vectors, manifest):
    import sentencepiece as spm
    processor = spm.SentencePieceProcessor()
    processor.Load(str(bundle / "tokenizer.model"))
    assert processor.GetPieceSize() == manifest["tokenizer"]["vocab_size"]
    assert (processor.pad_id(), processor.eos_id(), processor.unk_id(), processor.bos_id()) == (0, 1, 2, -1)
    assert [case["prompt"] for case in vectors["cases"]] == TEST_PROMPTS
    for case in vectors["cases"]:
        ids, mask = encode(processor, case["prompt"], 64)
        assert (case["ids"], case["attention_mask"]) == (ids, mask)
        assert len(ids) == 64 and ids[sum(mask) - 1] == 1
    truncated = vectors["cases"][-1]
    assert sum(truncated["attention_mask"]) == 64 and truncated["ids"][-1] == 1
    unicode_case = next(c for c in vectors["cases"] if c["prompt"].startswith("🦊"))
    assert 2 not in unicode_case["ids"]  # byte fallback, no unk


# ---- determinism ----

def test_same_seed_gives_identical_files(bundle, tmp_path):
    again = export(tmp_path / "again", seed=0)
    for name in MODULE_FILES + ("tokenizer.model", "tokenizer_test_vectors.json", "manifest.json"):
        assert (again / name).read_bytes() == (bundle / name).read_bytes(), name


def test_other_seed_gives_other_weights(scripted):
    dit, _, _ = build_tiny_modules(CONFIG, seed=1)
    reference = scripted["dit"].state_dict()
    assert not torch.equal(dit.state_dict()["proj_out.weight"], reference["proj_out.weight"])
