"""Command line:

    python -m radial_export --tiny --out DIR [--seed N]
    python -m radial_export --from PIPELINE_DIR --out DIR [--dtype bf16|fp16|fp32] [--name NAME]
    python -m radial_export --random wan2.1-t2v-1.3b|wan2.1-t2v-14b --out DIR [--dtype ...] [--seed N]

(`worker/exporter/radial-export` runs the same with the repository's .venv.)"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict

from .errors import ExportError


def _pin_hash_seed(argv) -> None:
    """TorchScript writes a module's constants in Python set order, which follows the per-process
    string hash seed; the same seed in every export keeps the .pt files byte-identical. Re-executes
    this command once with PYTHONHASHSEED=0 when it is not already so."""
    if os.environ.get("PYTHONHASHSEED") == "0":
        return
    env = dict(os.environ, PYTHONHASHSEED="0")
    os.execve(sys.executable, [sys.executable, "-m", "radial_export", *argv], env)


def _log(line: str) -> None:
    print(f"radial_export: {line}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _pin_hash_seed(argv)
    parser = argparse.ArgumentParser(
        prog="radial_export",
        description="Write a radial model bundle (manifest.json, TorchScript DiT, text encoder and "
                    "VAE decoder, SentencePiece tokenizer).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiny", action="store_true",
                        help="the tiny Wan2.1-architecture model with seeded random weights (demo and "
                             "tests)")
    source.add_argument("--from", dest="source", type=Path, metavar="PIPELINE_DIR",
                        help="a diffusers Wan2.1 text-to-video pipeline directory (model_index.json, "
                             "transformer/, text_encoder/, vae/, tokenizer/, scheduler/)")
    source.add_argument("--random", metavar="PRESET",
                        help="a published configuration (wan2.1-t2v-1.3b, wan2.1-t2v-14b) with seeded "
                             "random weights, for timing at real sizes; its video is noise")
    parser.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"),
                        help="weight dtype of a --from or --random bundle (default bf16); --tiny is "
                             "fp32")
    parser.add_argument("--name", help="the manifest's model name (--from; default: the pipeline "
                                       "directory's name)")
    parser.add_argument("--seed", type=int, help="weight seed of --tiny or --random (default 0)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.tiny:
        if args.dtype not in (None, "fp32"):
            parser.error("--tiny writes float32 weights; --dtype applies to --from")
        if args.name is not None:
            parser.error("--name applies to --from; the tiny bundle is wan2.1-tiny")
        seed = 0 if args.seed is None else args.seed
        from .bundle import export_tiny
        manifest = export_tiny(args.out, seed=seed)
        print(f"radial_export: wrote {manifest['name']} (seed {seed}) to {args.out} "
              f"in {time.monotonic() - started:.1f} s")
        return 0
    if args.random is not None:
        if args.name is not None:
            parser.error("--name applies to --from; a --random bundle is named PRESET-random")
        from .random_bundle import export_random
        seed = 0 if args.seed is None else args.seed
        return _export(lambda: export_random(args.random, args.out, dtype=args.dtype or "bf16",
                                             seed=seed, log=_log),
                       lambda m: f"{m['name']} ({m['dtype']}, seed {seed}) to {args.out}", started)
    if args.seed is not None:
        parser.error("--seed applies to --tiny and --random; --from takes the checkpoint's weights")
    from .checkpoint import export_checkpoint
    return _export(lambda: export_checkpoint(args.source, args.out, dtype=args.dtype or "bf16",
                                             name=args.name, log=_log),
                   lambda m: f"{m['name']} ({m['dtype']}) from {args.source} to {args.out}", started)


def _export(run: Callable[[], Dict], describe: Callable[[Dict], str], started: float) -> int:
    """Runs an export; input errors are one line on stderr and exit status 2."""
    try:
        manifest = run()
    except ExportError as error:
        print(f"radial_export: error: {error}", file=sys.stderr)
        return 2
    print(f"radial_export: wrote {describe(manifest)} in {time.monotonic() - started:.1f} s")
    return 0

if __name__ == "__main__":
    sys.exit(main())
