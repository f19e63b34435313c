"""radial_export: writes model bundles (manifest + TorchScript modules + tokenizer) for radial-worker.

`python -m radial_export --tiny --out DIR [--seed N]` writes the random-weight demo bundle;
`python -m radial_export --from PIPELINE_DIR --out DIR [--dtype bf16|fp16|fp32]` converts a diffusers
Wan2.1 text-to-video checkpoint (radial_export.checkpoint.export_checkpoint).
"""

__all__ = ["export_tiny", "TinyConfig"]

from .bundle import TinyConfig, export_tiny
