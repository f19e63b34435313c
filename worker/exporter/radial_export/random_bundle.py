"""Bundles of the published Wan2.1 text-to-video configurations with random weights, for timing at
real sizes where no checkpoint can be downloaded (`radial_export --random wan2.1-t2v-14b`).

The modules, their float32 parts and the manifest are those of a `--from` export of the matching
`Wan2.1-T2V-*-Diffusers` checkpoint; only the weights (seeded: normal(0, 0.02) for matrices and
embeddings, ones for norm scales, zeros for biases) and the tokenizer (the tiny bundle's 700-piece
SentencePiece model, whose ids are valid UMT5 ids) differ. Each tensor is created once, in its
final dtype, so memory stays at one module's weights. The values are drawn on a GPU when one is
visible (the same seed gives the same weights on the same kind of device). The video it makes is
noise."""

from types import SimpleNamespace
from pathlib import Path
from typing import Callable, Dict

import torch
from torch import nn

from .bundle import bundle_manifest, write_bundle
from .checkpoint import LIMITS, NEGATIVE_PROMPT, RADIAL, components, default_video, parse_dtype
from .dit import DiTConfig
from .errors import ExportError
from .text_encoder import TextEncoderConfig
from .tokenizer import (EOS_ID, PAD_ID, UNK_ID, WAN_MAX_SEQUENCE_LENGTH, load_processor, test_vectors,
                        train_sentencepiece)
from .vae import VAEConfig

# AutoencoderKLWan's latent statistics as published with Wan2.1 (diffusers' defaults).
LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715,
                0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652,
               1.5579, 1.6382, 1.1253, 2.8251, 1.916)

# transformer/config.json of Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers, and their schedulers' flow_shift.
# Both use UMT5-XXL (TextEncoderConfig's defaults) and the same VAE.
PRESETS = {
    "wan2.1-t2v-1.3b": {"dit": DiTConfig(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
                                         num_layers=30), "text_encoder": TextEncoderConfig(),
                        "shift": 3.0},
    "wan2.1-t2v-14b": {"dit": DiTConfig(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824,
                                        num_layers=40), "text_encoder": TextEncoderConfig(),
                       "shift": 5.0},
}
VOCAB = 700  # the stand-in tokenizer's pieces


def _fill(module: nn.Module, dtype_for: Callable[[str], torch.dtype], generator: torch.Generator) -> None:
    """Gives every meta parameter of `module` seeded values in its final dtype; tied parameters
    (UMT5's shared / encoder.embed_tokens) stay one tensor."""
    made: Dict[int, nn.Parameter] = {}
    for name, parameter in list(module.named_parameters(remove_duplicate=False)):
        if id(parameter) not in made:
            value = torch.empty(parameter.shape, dtype=dtype_for(name))
            if name.endswith("bias"):
                value.zero_()
            elif parameter.dim() == 1:  # norm scales
                value.fill_(1.0)
            else:
                # Drawn where the generator lives: the CPU's normal_ is single-threaded (UMT5-XXL
                # alone took 196 s on 16 cores), a GPU's takes a fraction of a second.
                value.copy_(torch.empty(parameter.shape, dtype=value.dtype, device=generator.device)
                            .normal_(0.0, 0.02, generator=generator))
            made[id(parameter)] = nn.Parameter(value, requires_grad=False)
        owner_name, _, attribute = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        setattr(owner, attribute, made[id(parameter)])


def export_random(preset: str, out_dir: Path, dtype: str = "bf16", seed: int = 0,
                  log: Callable[[str], None] = lambda line: None) -> Dict:
    if preset not in PRESETS:
        raise ExportError(f"--random: got {preset!r}, expected one of {', '.join(sorted(PRESETS))}")
    torch_dtype, dtype_name = parse_dtype(dtype)
    spec = SimpleNamespace(
        dit=PRESETS[preset]["dit"], text_encoder=PRESETS[preset]["text_encoder"],
        vae=VAEConfig(latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD, decode_chunk_frames=1))
    model_bytes = train_sentencepiece(VOCAB)
    processor = load_processor(model_bytes)
    max_length = WAN_MAX_SEQUENCE_LENGTH
    manifest = bundle_manifest(
        name=f"{preset}-random", dtype=dtype_name,
        weights={"source": "random", "seed": seed, "preset": preset},
        dit=spec.dit, text_encoder=spec.text_encoder,
        tokenizer={"pad_id": PAD_ID, "eos_id": EOS_ID, "unk_id": UNK_ID, "max_length": max_length,
                   "vocab_size": VOCAB},
        vae=spec.vae,
        sampler={"name": "flow_unipc", "num_train_timesteps": 1000, "shift": PRESETS[preset]["shift"],
                 "solver_order": 2, "steps": 50, "guidance": 5.0},
        limits=LIMITS, defaults={**default_video(spec), "negative_prompt": NEGATIVE_PROMPT},
        radial=dict(RADIAL))

    def builder(part, index):
        def build() -> nn.Module:
            module = part.build_meta()
            device = "cuda" if torch.cuda.is_available() else "cpu"
            _fill(module, part.dtype_for, torch.Generator(device).manual_seed(seed + index))
            return module
        return build

    builders = {part.key: builder(part, index)
                for index, part in enumerate(components(spec, torch_dtype))}
    return write_bundle(Path(out_dir), manifest, builders, model_bytes,
                        test_vectors(processor, max_length), log=log)
