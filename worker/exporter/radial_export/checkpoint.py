"""Exports a bundle from a diffusers Wan2.1 text-to-video pipeline directory (`--from`).

Order of work, so that every input problem is reported before anything heavy happens:
1. configs -> our module configs (pipeline_config.read_pipeline; refuses unsupported values);
2. the tokenizer folder (spiece.model, ids, max length, test vectors from transformers);
3. the safetensors headers of the three components against meta-device builds of our modules: all
   missing, unexpected and mis-shaped tensors of all components in one error;
4. bundle.write_bundle builds one module at a time (meta device, then each tensor read and converted
   into its final storage), scripts and saves it, and drops it before building the next; peak host
   memory is the largest module's converted weights plus a small margin (see weights.py).

Dtypes follow the reference loaders: everything in the bundle dtype, except the DiT parameters that
diffusers keeps in float32 (WanTransformer3DModel._keep_in_fp32_modules: time_embedder,
scale_shift_table, norm1-3) and, in float16 only, UMT5's feed-forward output `wo` (transformers'
_keep_in_fp32_modules for T5-family models). Our modules compute with those dtypes as the
references do (modulation and norms in float32, `wo`'s input cast to its weight dtype).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .bundle import bundle_manifest, write_bundle
from .dit import WanTransformer3DModel
from .errors import ExportError
from .pipeline_config import PipelineSpec, read_pipeline
from .text_encoder import UMT5EncoderModel
from .tokenizer import CheckpointTokenizer, read_checkpoint_tokenizer
from .vae import AutoencoderKLWanDecoder
from .weights import Checkpoint, ExpectedTensor, build_on_meta, expected_tensors

DTYPES = {"bf16": (torch.bfloat16, "bfloat16"), "fp16": (torch.float16, "float16"),
          "fp32": (torch.float32, "float32")}

# diffusers 0.42 WanTransformer3DModel._keep_in_fp32_modules, matched like diffusers does: a
# parameter stays float32 when one of its dotted name's parts is in the set.
DIT_FLOAT32_PARTS = frozenset({"rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"})
# transformers' UMT5 _keep_in_fp32_modules, applied by transformers for float16 only.
TEXT_ENCODER_FLOAT16_FLOAT32_PARTS = frozenset({"wo"})
# The VAE checkpoint's encoder half, which the bundle does not use.
VAE_UNUSED_PREFIXES = ("encoder.", "quant_conv.")

# Serving limits and defaults for real Wan2.1 models (the manifest's limits/defaults/radial).
LIMITS = {
    "width": {"min": 256, "max": 1280, "multiple": 16},
    "height": {"min": 256, "max": 1280, "multiple": 16},
    "frames": {"min": 1, "max": 129, "step": 4},
    "steps": {"min": 1, "max": 100},
    "guidance": {"min": 0.0, "max": 20.0},
    "prompt_max_chars": 2000}
NEGATIVE_PROMPT = ("blurry, low quality, low resolution, jpeg artifacts, distorted faces, deformed "
                   "hands, extra limbs, flickering, static frame, overexposed, watermark, subtitles, "
                   "text")
# 14B-sized transformers (inner dim 5120) were trained for 720p, 1.3B-sized ones (1536) for 480p.
LARGE_MODEL_DIM = 5120
# Radial Attention's Wan settings (shared/radial-attention.md: decay 0.2, sink on for Wan, 12 dense
# steps of 50, tiles of 128) with one dense layer and no dense last steps (the choice).
RADIAL = {"decay": 0.2, "sink": True, "block": 128, "dense_layers": 1, "dense_steps": 12,
          "dense_last_steps": 0}


def parse_dtype(dtype: str) -> Tuple[torch.dtype, str]:
    """--dtype's value -> (torch dtype, the manifest's name for it)."""
    if dtype not in DTYPES:
        raise ExportError(f"--dtype: got {dtype!r}, expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _float32_where(parts: frozenset, dtype: torch.dtype) -> Callable[[str], torch.dtype]:
    def dtype_for(name: str) -> torch.dtype:
        return torch.float32 if parts.intersection(name.split(".")) else dtype
    return dtype_for


@dataclass(frozen=True)
class Component:
    """One module of the bundle and where its weights come from."""
    key: str                  # write_bundle's module key
    folder: str               # the pipeline directory's component folder
    factory: Callable[[], nn.Module]
    dtype_for: Callable[[str], torch.dtype]
    ignore_prefixes: Tuple[str, ...] = ()

    def build_meta(self) -> nn.Module:
        return build_on_meta(self.factory)


def components(spec: PipelineSpec, dtype: torch.dtype) -> List[Component]:
    dit, vae = spec.dit, spec.vae
    text_dtype_for = (_float32_where(TEXT_ENCODER_FLOAT16_FLOAT32_PARTS, dtype)
                      if dtype == torch.float16 else (lambda name: dtype))
    return [
        Component("dit", "transformer", lambda: WanTransformer3DModel(dit),
                  _float32_where(DIT_FLOAT32_PARTS, dtype)),
        Component("text_encoder", "text_encoder", lambda: UMT5EncoderModel(spec.text_encoder),
                  text_dtype_for),
        Component("vae", "vae", lambda: AutoencoderKLWanDecoder(vae), lambda name: dtype,
                  ignore_prefixes=VAE_UNUSED_PREFIXES),
    ]


def check_weights(spec: PipelineSpec, parts: List[Component]) -> Dict[str, Checkpoint]:
    """Reads every component's safetensors headers and compares them with our modules; raises one
    ExportError listing every problem of every component."""
    checkpoints, report = {}, []
    for part in parts:
        folder = spec.folder(part.folder)
        checkpoint = Checkpoint(folder)
        problems = checkpoint.mismatches(expected_tensors(part.build_meta()), part.ignore_prefixes)
        if problems:
            report.append(f"{folder}: {len(problems)} tensor(s) do not match the model its config "
                          "describes:\n" + "\n".join(f"  {line}" for line in problems))
        checkpoints[part.key] = checkpoint
    if report:
        raise ExportError("\n".join(report))
    return checkpoints


def load_module(part: Component, checkpoint: Checkpoint) -> nn.Module:
    module = part.build_meta()
    expected: List[ExpectedTensor] = expected_tensors(module)
    checkpoint.load_into(module, expected, part.dtype_for)
    return module


def default_video(spec: PipelineSpec) -> Dict:
    if spec.dit.inner_dim >= LARGE_MODEL_DIM:
        return {"width": 1280, "height": 720, "frames": 81, "fps": 16}
    return {"width": 832, "height": 480, "frames": 81, "fps": 16}


def checkpoint_manifest(spec: PipelineSpec, tokenizer: CheckpointTokenizer, dtype_name: str,
                        name: str) -> Dict:
    return bundle_manifest(
        name=name, dtype=dtype_name,
        weights={"source": str(spec.source), "format": "diffusers",
                 "diffusers_version": spec.diffusers_version},
        dit=spec.dit, text_encoder=spec.text_encoder,
        tokenizer={"pad_id": tokenizer.pad_id, "eos_id": tokenizer.eos_id,
                   "unk_id": tokenizer.unk_id, "max_length": tokenizer.max_length,
                   "vocab_size": tokenizer.vocab_size},
        vae=spec.vae, sampler=dict(spec.sampler), limits=LIMITS,
        defaults={**default_video(spec), "negative_prompt": NEGATIVE_PROMPT},
        radial=dict(RADIAL))


def export_checkpoint(source: Path, out_dir: Path, dtype: str = "bf16", name: Optional[str] = None,
                      log: Callable[[str], None] = lambda line: None) -> Dict:
    """Writes the bundle of the diffusers pipeline directory `source` into out_dir and returns its
    manifest. Raises ExportError, before writing anything, for configs, tensors or tokenizer files
    the bundle cannot represent."""
    torch_dtype, dtype_name = parse_dtype(dtype)
    spec = read_pipeline(Path(source))
    tokenizer = read_checkpoint_tokenizer(spec.folder("tokenizer"), spec.text_encoder.vocab_size)
    for line in tokenizer.rule_mismatches:
        log(f"warning: tokenizer: {line}")
    parts = components(spec, torch_dtype)
    checkpoints = check_weights(spec, parts)
    manifest = checkpoint_manifest(spec, tokenizer, dtype_name, name or spec.source.name)
    builders = {part.key: (lambda part=part: load_module(part, checkpoints[part.key]))
                for part in parts}
    return write_bundle(Path(out_dir), manifest, builders, tokenizer.model_bytes, tokenizer.vectors,
                        log=log)
