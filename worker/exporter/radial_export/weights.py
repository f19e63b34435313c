"""Loads one component's safetensors checkpoint (single file or sharded with an index) into one of
our modules, tensor by tensor, converting to the bundle's dtype as it reads.

Memory, the point of this module: the model is built on the meta device (parameters without
storage); each tensor gets its final storage once, in its target dtype, and is filled from the file
in row blocks of at most BLOCK_BYTES. The file is read through safetensors' memory map, and a map
keeps every page it has touched in this process's resident set until it is closed, so the map is
reopened after every MAP_WINDOW_BYTES read: pages already copied leave the resident set. Peak host
memory while loading a module is therefore its converted weights plus about MAP_WINDOW_BYTES +
BLOCK_BYTES, whatever the size of the largest tensor (UMT5-XXL's embedding is 4.2 GB in float32).

Checking comes before loading: `Checkpoint.mismatches` compares the file headers with the module's
state dict (tied parameters, such as UMT5's `shared.weight` / `encoder.embed_tokens.weight`, are one
entry that either name may provide) without reading any tensor data.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .errors import ExportError

BLOCK_BYTES = 16 << 20
MAP_WINDOW_BYTES = 64 << 20

# Checkpoint file names in the order diffusers and transformers look for them.
SINGLE_FILE_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
_ITEM_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}  # the floating dtypes we convert from


@dataclass(frozen=True)
class TensorEntry:
    file: Path
    order: int  # position in its file (by data offset), for sequential reads
    shape: Tuple[int, ...]
    dtype: str  # safetensors' code: F32, BF16, ...


@dataclass(frozen=True)
class ExpectedTensor:
    """One tensor of a module's state dict; `names` holds every name tied to it."""
    names: Tuple[str, ...]
    shape: Tuple[int, ...]


def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """Constructs a module whose parameters have no storage. Our modules create their
    non-persistent buffers (RoPE tables, latent statistics) with device="cpu", so those are real
    tensors even here (tests/exporter/test_from_diffusers.py checks them after a --from export)."""
    with torch.device("meta"):
        module = factory()
    return module.eval()


def expected_tensors(module: nn.Module) -> List[ExpectedTensor]:
    """The state dict's tensors in order, tied names grouped (same Parameter object)."""
    groups: Dict[int, List[str]] = {}
    shapes: Dict[int, Tuple[int, ...]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
        shapes[id(tensor)] = tuple(tensor.shape)
    return [ExpectedTensor(tuple(names), shapes[key]) for key, names in groups.items()]


def _weight_files(folder: Path) -> Tuple[List[Path], Optional[Dict[str, Path]]]:
    """(files, the index's name -> file map or None) of the component in `folder`."""
    if not folder.is_dir():
        raise ExportError(f"{folder}: missing, expected the component's folder with config and "
                          "safetensors weights")
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise ExportError(f"{folder}: got {len(indexes)} safetensors indexes "
                          f"({', '.join(p.name for p in indexes)}), expected one")
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text(encoding="utf-8"))["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (ValueError, KeyError, TypeError) as error:
            raise ExportError(f"{indexes[0]}: not a safetensors index ({error})") from None
        mapping = {name: folder / file for name, file in weight_map.items()}
        files = sorted(set(mapping.values()))
        absent = [str(path) for path in files if not path.is_file()]
        if absent:
            raise ExportError(f"{indexes[0]}: lists shard files that are missing: {', '.join(absent)}")
        return files, mapping
    for name in SINGLE_FILE_NAMES:
        if (folder / name).is_file():
            return [folder / name], None
    candidates = sorted(folder.glob("*.safetensors"))
    if len(candidates) == 1:
        return candidates, None
    if candidates:
        raise ExportError(f"{folder}: got {len(candidates)} safetensors files and no index "
                          f"({', '.join(p.name for p in candidates)}), expected one file or an index")
    pickles = sorted(p.name for p in folder.glob("*.bin"))
    hint = (f"; found {', '.join(pickles)}: convert it to safetensors first" if pickles else "")
    raise ExportError(f"{folder}: no safetensors weights (expected {' or '.join(SINGLE_FILE_NAMES)} "
                      f"or a *.safetensors.index.json){hint}")


class Checkpoint:
    """The tensors of one component folder: names, shapes, dtypes and the file holding each, read
    from the safetensors headers only."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.entries: Dict[str, TensorEntry] = {}
        self.problems: List[str] = []  # header-level inconsistencies, reported with the mismatches
        files, mapping = _weight_files(self.folder)
        for path in files:
            try:
                with safe_open(str(path), framework="pt") as handle:
                    names = handle.offset_keys() if hasattr(handle, "offset_keys") else handle.keys()
                    for order, name in enumerate(names):
                        view = handle.get_slice(name)
                        if name in self.entries:
                            self.problems.append(f"duplicate {name}: in {self.entries[name].file.name} "
                                                 f"and {path.name}")
                            continue
                        self.entries[name] = TensorEntry(path, order, tuple(view.get_shape()),
                                                         view.get_dtype())
            except SafetensorError as error:
                raise ExportError(f"{path}: not a readable safetensors file ({error})") from None
        for name, path in sorted((mapping or {}).items()):
            entry = self.entries.get(name)
            if entry is None or entry.file != path:
                self.problems.append(f"index lists {name} in {path.name}, which does not hold it")
        self._handle = None
        self._handle_file: Optional[Path] = None
        self._handle_bytes = 0

    def mismatches(self, expected: Sequence[ExpectedTensor],
                   ignore_prefixes: Tuple[str, ...] = ()) -> List[str]:
        """One line per missing, mis-shaped, non-float or unexpected tensor (names under
        `ignore_prefixes` are never unexpected)."""
        lines = list(self.problems)
        known = set()
        for tensor in expected:
            known.update(tensor.names)
            present = [name for name in tensor.names if name in self.entries]
            if not present:
                also = f" (or {', '.join(tensor.names[1:])})" if len(tensor.names) > 1 else ""
                lines.append(f"missing {tensor.names[0]}{also}: expected shape {list(tensor.shape)}")
            for name in present:
                entry = self.entries[name]
                if entry.shape != tensor.shape:
                    lines.append(f"mis-shaped {name}: expected shape {list(tensor.shape)}, "
                                 f"got {list(entry.shape)}")
                if entry.dtype not in _ITEM_SIZE:
                    lines.append(f"mis-typed {name}: got dtype {entry.dtype}, expected a floating "
                                 "point tensor")
        for name in sorted(self.entries):
            if name not in known and not name.startswith(ignore_prefixes):
                lines.append(f"unexpected {name}: got shape {list(self.entries[name].shape)}")
        return lines

    def load_into(self, module: nn.Module, expected: Sequence[ExpectedTensor],
                  dtype_for: Callable[[str], torch.dtype]) -> None:
        """Gives every parameter and persistent buffer of the meta-built `module` its tensor from the
        checkpoint, in dtype_for(first name). Call after `mismatches` returned nothing."""
        sources = []
        for tensor in expected:
            name = next(name for name in tensor.names if name in self.entries)
            entry = self.entries[name]
            sources.append((str(entry.file), entry.order, name, tensor))
        state: Dict[str, torch.Tensor] = {}
        try:
            for _, _, name, tensor in sorted(sources, key=lambda item: item[:2]):
                target = torch.empty(tensor.shape, dtype=dtype_for(tensor.names[0]))
                self._read(name, target)
                for alias in tensor.names:
                    state[alias] = target
        finally:
            self._close()
        module.load_state_dict(state, strict=True, assign=True)
        left = [name for name, value in list(module.named_parameters()) + list(module.named_buffers())
                if value.is_meta]
        if left:
            raise RuntimeError(f"tensors without storage after loading: {', '.join(left)}")

    def _close(self) -> None:
        self._handle = None  # dropping the handle unmaps the file
        self._handle_file = None
        self._handle_bytes = 0

    def _mapped(self, path: Path):
        if self._handle is None or self._handle_file != path or self._handle_bytes >= MAP_WINDOW_BYTES:
            self._close()
            self._handle = safe_open(str(path), framework="pt")
            self._handle_file = path
        return self._handle

    def _read(self, name: str, target: torch.Tensor) -> None:
        entry = self.entries[name]
        if target.numel() == 0:
            return
        if target.dim() == 0:
            target.copy_(self._mapped(entry.file).get_tensor(name))
            return
        row_bytes = _ITEM_SIZE[entry.dtype] * (target.numel() // target.size(0))
        rows = max(1, BLOCK_BYTES // row_bytes)
        for start in range(0, target.size(0), rows):
            block = self._mapped(entry.file).get_slice(name)[start:start + rows]
            target[start:start + rows].copy_(block)
            self._handle_bytes += block.numel() * _ITEM_SIZE[entry.dtype]
            del block
