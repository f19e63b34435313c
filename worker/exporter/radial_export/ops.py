"""Loads libradial_ops.so so that torch.ops.radial.* exists for eager calls and for scripting."""

import os
from pathlib import Path

import torch

# worker/exporter/radial_export/ops.py -> repository root is three levels above this folder.
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_LIBRARY = REPO_ROOT / "build" / "kernels" / "libradial_ops.so"

_loaded_from = None


def library_path() -> Path:
    """The op library to load: $RADIAL_OPS_LIBRARY, else <repo>/build/kernels/libradial_ops.so."""
    return Path(os.environ.get("RADIAL_OPS_LIBRARY", str(DEFAULT_LIBRARY)))


def load_radial_ops() -> Path:
    """Loads the library once per process. Scripting a module that calls torch.ops.radial.attention
    needs the op registered first, so every entry point calls this before building models."""
    global _loaded_from
    if _loaded_from is not None:
        return _loaded_from
    path = library_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"radial op library: got {path}, expected an existing file "
            "(build it with scripts/build.sh, or set RADIAL_OPS_LIBRARY)")
    torch.ops.load_library(str(path))
    _loaded_from = path
    return path
