"""radial_export: writes model bundles (manifest + TorchScript modules + tokenizer) for radial-worker.

`python -m radial_export --tiny --out DIR [--seed N]` writes the random-weight demo bundle.
"""

__all__ = ["export_tiny", "TinyConfig"]

from .bundle import TinyConfig, export_tiny
