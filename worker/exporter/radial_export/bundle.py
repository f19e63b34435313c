"""Writes a model bundle: manifest.json, dit.pt, text_encoder.pt, vae_decoder.pt (TorchScript),
tokenizer.model and tokenizer_test_vectors.json. The C++ worker loads exactly these files; the
manifest's keys are its interface (see ../README.md)."""

import gc
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch
from torch import nn

from .dit import DiTConfig, WanTransformer3DModel
from .ops import load_radial_ops
from .text_encoder import TextEncoderConfig, UMT5EncoderModel
from .tokenizer import EOS_ID, PAD_ID, UNK_ID, load_processor, test_vectors, train_sentencepiece
from .vae import AutoencoderKLWanDecoder, VAEConfig

FORMAT_VERSION = 1
MODULE_FILES = (("dit", "dit.pt"), ("text_encoder", "text_encoder.pt"), ("vae", "vae_decoder.pt"))
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_test_vectors.json")
HASH_CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class TinyConfig:
    """The demo/test model: Wan2.1's architecture at sizes that run in seconds on two CPU cores.
    At the default 17 x 128 x 128 video the latent is 5 x 16 x 16, i.e. 5 frames of 64 tokens, so
    radial tiles of 64 tokens cover one latent frame each."""
    vocab_size: int = 700
    max_length: int = 64
    text_dim: int = 128
    dit: DiTConfig = DiTConfig(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64,
                               in_channels=16, out_channels=16, text_dim=128, freq_dim=256,
                               ffn_dim=512, num_layers=4)
    text_encoder: TextEncoderConfig = TextEncoderConfig(vocab_size=700, d_model=128, d_kv=64,
                                                        d_ff=256, num_layers=2, num_heads=2)
    # Fixed, made-up latent statistics (a real VAE's come from its config).
    vae: VAEConfig = VAEConfig(
        base_dim=16, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
        temperal_downsample=(False, True, True),
        latents_mean=tuple(round(-0.45 + 0.06 * i, 4) for i in range(16)),
        latents_std=tuple(round(0.8 + 0.05 * (i % 5), 4) for i in range(16)),
        decode_chunk_frames=4)
    sampler: Dict = field(default_factory=lambda: {
        "name": "flow_euler", "num_train_timesteps": 1000, "shift": 3.0, "steps": 8,
        "guidance": 5.0})
    radial: Dict = field(default_factory=lambda: {
        "decay": 1.0, "sink": True, "block": 64, "dense_layers": 1, "dense_steps": 1,
        "dense_last_steps": 0})
    defaults: Dict = field(default_factory=lambda: {
        "width": 128, "height": 128, "frames": 17, "fps": 16,
        "negative_prompt": "low quality, blurry, distorted, static, still picture, worst quality, "
                           "jpeg artifacts, ugly, deformed"})
    limits: Dict = field(default_factory=lambda: {
        "width": {"min": 64, "max": 512, "multiple": 16},
        "height": {"min": 64, "max": 512, "multiple": 16},
        "frames": {"min": 1, "max": 81, "step": 4},
        "steps": {"min": 1, "max": 100},
        "guidance": {"min": 0.0, "max": 20.0},
        "prompt_max_chars": 2000})


def build_tiny_modules(config: TinyConfig, seed: int) -> Tuple[WanTransformer3DModel, UMT5EncoderModel,
                                                               AutoencoderKLWanDecoder]:
    """Eager modules with seeded random weights. Each module gets its own seed so that changing one
    module's size leaves the others' weights unchanged."""
    torch.manual_seed(seed)
    dit = WanTransformer3DModel(config.dit).eval()
    torch.manual_seed(seed + 1)
    text_encoder = UMT5EncoderModel(config.text_encoder).eval()
    torch.manual_seed(seed + 2)
    vae = AutoencoderKLWanDecoder(config.vae).eval()
    return dit, text_encoder, vae


def _vectors_json(vectors: Dict) -> str:
    """JSON with one line per case, so the file reads as a table."""
    header = {key: value for key, value in vectors.items() if key != "cases"}
    lines = [json.dumps(case, ensure_ascii=False) for case in vectors["cases"]]
    head = json.dumps(header, indent=1, ensure_ascii=False)[:-2]
    return head + ',\n "cases": [\n  ' + ',\n  '.join(lines) + '\n ]\n}\n'


def _sha256(path: Path) -> str:
    """Streams the file: a 14B model's dit.pt is larger than the memory the export may use."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_manifest(*, name: str, dtype: str, weights: Dict, dit: DiTConfig,
                    text_encoder: TextEncoderConfig, tokenizer: Dict, vae: VAEConfig, sampler: Dict,
                    limits: Dict, defaults: Dict, radial: Dict) -> Dict:
    """The manifest without its "files" section (write_bundle adds it). `tokenizer` holds pad_id,
    eos_id, unk_id, max_length and vocab_size (SentencePiece pieces)."""
    te = text_encoder
    # The worker chunks its incremental VAE decode by this, to decode exactly as forward does.
    if isinstance(vae.decode_chunk_frames, bool) or not isinstance(vae.decode_chunk_frames, int) \
            or vae.decode_chunk_frames < 1:
        raise ValueError(f"vae decode_chunk_frames: got {vae.decode_chunk_frames!r}, expected an "
                         f"integer >= 1")
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "architecture": "wan2.1",
        "dtype": dtype,
        "weights": dict(weights),
        "dit": {
            "file": "dit.pt",
            "in_channels": dit.in_channels, "out_channels": dit.out_channels,
            "patch_size": list(dit.patch_size),
            "num_layers": dit.num_layers, "num_heads": dit.num_attention_heads,
            "head_dim": dit.attention_head_dim, "text_dim": dit.text_dim,
            "freq_dim": dit.freq_dim, "ffn_dim": dit.ffn_dim,
            "eps": dit.eps, "rope_max_seq_len": dit.rope_max_seq_len,
        },
        "text_encoder": {
            "file": "text_encoder.pt", "dim": te.d_model, "max_length": tokenizer["max_length"],
            "vocab_size": te.vocab_size, "num_layers": te.num_layers, "num_heads": te.num_heads,
            "d_kv": te.d_kv, "d_ff": te.d_ff,
        },
        "tokenizer": {
            "type": "sentencepiece", "file": "tokenizer.model", "pad_id": tokenizer["pad_id"],
            "eos_id": tokenizer["eos_id"], "unk_id": tokenizer["unk_id"],
            "max_length": tokenizer["max_length"], "vocab_size": tokenizer["vocab_size"],
            "test_vectors": "tokenizer_test_vectors.json",
        },
        "vae": {
            "file": "vae_decoder.pt", "latent_channels": vae.z_dim,
            "temporal_factor": vae.temporal_factor, "spatial_factor": vae.spatial_factor,
            "base_dim": vae.base_dim, "latents_mean": list(vae.latents_mean),
            "latents_std": list(vae.latents_std), "decode_chunk_frames": vae.decode_chunk_frames,
        },
        "sampler": dict(sampler),
        "limits": json.loads(json.dumps(limits)),
        "defaults": dict(defaults),
        "radial": dict(radial),
    }


def tiny_manifest(config: TinyConfig, seed: int) -> Dict:
    return bundle_manifest(
        name="wan2.1-tiny", dtype="float32", weights={"source": "random", "seed": seed},
        dit=config.dit, text_encoder=config.text_encoder,
        tokenizer={"pad_id": PAD_ID, "eos_id": EOS_ID, "unk_id": UNK_ID,
                   "max_length": config.max_length, "vocab_size": config.vocab_size},
        vae=config.vae, sampler=config.sampler, limits=config.limits, defaults=config.defaults,
        radial=config.radial)


def write_bundle(out_dir: Path, manifest: Dict, modules: Dict[str, Callable[[], nn.Module]],
                 tokenizer_model: bytes, vectors: Dict,
                 log: Callable[[str], None] = lambda line: None) -> Dict:
    """Writes a bundle into out_dir (created if missing; files overwritten) and returns the manifest
    with its "files" section. `modules` maps "dit", "text_encoder" and "vae" to functions that build
    the eager module; each is built, scripted, saved and dropped before the next is built, so only
    one module's weights are in memory at a time. manifest.json is written last: a directory
    without it is not a bundle the worker will load."""
    load_radial_ops()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # an older bundle's, until the new one is whole
    (out_dir / "tokenizer.model").write_bytes(tokenizer_model)
    (out_dir / "tokenizer_test_vectors.json").write_text(_vectors_json(vectors), encoding="utf-8")
    with torch.no_grad():
        for key, file in MODULE_FILES:
            started = time.monotonic()
            module = modules[key]()
            torch.jit.save(torch.jit.script(module), str(out_dir / file))
            del module
            gc.collect()
            log(f"{file}: {(out_dir / file).stat().st_size / 2**20:.0f} MiB in "
                f"{time.monotonic() - started:.1f} s")
    manifest = dict(manifest)
    manifest["files"] = {name: {"sha256": _sha256(out_dir / name)}
                         for name in [file for _, file in MODULE_FILES] + list(TOKENIZER_FILES)}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def export_tiny(out_dir: Path, seed: int = 0, config: TinyConfig = TinyConfig()) -> Dict:
    """Writes the tiny random-weight bundle into out_dir (created if missing; files overwritten)
    and returns the manifest. The same seed gives byte-identical files."""
    load_radial_ops()
    if config.text_encoder.vocab_size != config.vocab_size:
        raise ValueError(f"text encoder vocab_size: got {config.text_encoder.vocab_size}, expected "
                         f"the tokenizer's {config.vocab_size}")
    if config.dit.text_dim != config.text_encoder.d_model or config.text_dim != config.dit.text_dim:
        raise ValueError(f"DiT text_dim: got {config.dit.text_dim}, expected the text encoder's "
                         f"d_model {config.text_encoder.d_model}")
    model_bytes = train_sentencepiece(config.vocab_size)
    processor = load_processor(model_bytes)
    if processor.GetPieceSize() != config.vocab_size:
        raise RuntimeError(f"tokenizer: got {processor.GetPieceSize()} pieces, "
                           f"expected {config.vocab_size}")
    vectors = test_vectors(processor, config.max_length)
    dit, text_encoder, vae = build_tiny_modules(config, seed)
    modules = {"dit": lambda: dit, "text_encoder": lambda: text_encoder, "vae": lambda: vae}
    return write_bundle(Path(out_dir), tiny_manifest(config, seed), modules, model_bytes, vectors)
