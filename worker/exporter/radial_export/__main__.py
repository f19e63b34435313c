"""Command line: python -m radial_export --tiny --out DIR [--seed N]."""

import argparse
import os
import sys
import time
from pathlib import Path

from .bundle import export_tiny


def _pin_hash_seed(argv) -> None:
    """TorchScript writes a module's constants in Python set order, which follows the per-process
    string hash seed; the same seed in every export keeps the .pt files byte-identical. Re-executes
    this command once with PYTHONHASHSEED=0 when it is not already so."""
    if os.environ.get("PYTHONHASHSEED") == "0":
        return
    env = dict(os.environ, PYTHONHASHSEED="0")
    os.execve(sys.executable, [sys.executable, "-m", "radial_export", *argv], env)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _pin_hash_seed(argv)
    parser = argparse.ArgumentParser(
        prog="radial_export",
        description="Write a radial model bundle (manifest.json, TorchScript DiT, text encoder and "
                    "VAE decoder, SentencePiece tokenizer).")
    parser.add_argument("--tiny", action="store_true",
                        help="the tiny Wan2.1-architecture model with seeded random weights (demo and "
                             "tests); converting diffusers checkpoints comes with issue 4")
    parser.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = parser.parse_args(argv)
    if not args.tiny:
        parser.error("--tiny is required: exporting real checkpoints (--from) is not built yet")
    started = time.monotonic()
    manifest = export_tiny(args.out, seed=args.seed)
    print(f"radial_export: wrote {manifest['name']} (seed {args.seed}) to {args.out} "
          f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
