"""Wall time and peak host memory of `radial_export --from` at the published Wan2.1 sizes.

    PYTHONPATH=worker/exporter python -m radial_export.bench_export --model 1.3b --work DIR \
        [--dtype bf16] [--out results.json]

Writes into DIR a diffusers-layout pipeline directory with random float32 weights under the
published configs, names and shapes (Wan2.1-T2V-1.3B/-14B-Diffusers: the transformer in shards of
at most 5 GB with an index, the UMT5-XXL encoder with `shared.weight` only, the VAE's decoder half;
the exporter ignores the encoder half, so it is left out), with a small stand-in tokenizer; then runs
the exporter on it in a subprocess and reports its wall time and its peak RSS above a baseline
process that imports the same modules. Disk: 4 bytes per parameter for the checkpoint plus the
bundle, about 40 GiB for 1.3b in bf16 (UMT5-XXL alone is 21 GiB in float32), 115 GiB for 14b.

A benchmark, not a test: it prints numbers (and writes them with --out) and asserts nothing.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from .dit import WanTransformer3DModel
from .random_bundle import LATENTS_MEAN, LATENTS_STD, PRESETS
from .text_encoder import TextEncoderConfig, UMT5EncoderModel
from .tokenizer import train_sentencepiece
from .vae import AutoencoderKLWanDecoder, VAEConfig
from .weights import build_on_meta, expected_tensors

# The published configurations (random_bundle.PRESETS), by the short name this command takes.
MODELS = {"1.3b": PRESETS["wan2.1-t2v-1.3b"], "14b": PRESETS["wan2.1-t2v-14b"]}
SHARD_BYTES = 5 * 10 ** 9
PEAK_PROBE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def write_json(path: Path, values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2) + "\n")


def write_component(folder: Path, factory, stem: str, seed: int) -> int:
    """Random float32 tensors under the module's state-dict names, in shards of at most
    SHARD_BYTES (one shard: diffusers' single-file name; more: numbered files and an index).
    Returns the parameter count."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    parts = []  # the tensor names of each shard written so far
    shard, shard_bytes, count = {}, 0, 0

    def flush():
        nonlocal shard, shard_bytes
        save_file(shard, str(folder / f"part-{len(parts) + 1}.safetensors"))
        parts.append(list(shard))
        shard, shard_bytes = {}, 0

    for tensor in expected_tensors(build_on_meta(factory)):
        value = torch.empty(tensor.shape).uniform_(-0.02, 0.02, generator=generator)
        count += value.numel()
        if shard and shard_bytes + value.numel() * 4 > SHARD_BYTES:
            flush()
        shard[tensor.names[0]] = value
        shard_bytes += value.numel() * 4
    flush()
    if len(parts) == 1:
        (folder / "part-1.safetensors").rename(folder / f"{stem}.safetensors")
        return count
    weight_map = {}
    for i, names in enumerate(parts, start=1):
        file = f"{stem}-{i:05d}-of-{len(parts):05d}.safetensors"
        (folder / f"part-{i}.safetensors").rename(folder / file)
        weight_map.update(dict.fromkeys(names, file))
    write_json(folder / f"{stem}.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    return count


def write_pipeline(directory: Path, model: str, text: TextEncoderConfig = TextEncoderConfig()) -> dict:
    """`text` defaults to UMT5-XXL (the published text encoder of both sizes)."""
    spec = MODELS[model]
    dit = spec["dit"]
    vae = VAEConfig(latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD)
    write_json(directory / "model_index.json", {
        "_class_name": "WanPipeline", "_diffusers_version": "0.33.0.dev0",
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"]})
    write_json(directory / "transformer" / "config.json", {
        "_class_name": "WanTransformer3DModel", "added_kv_proj_dim": None, "attention_head_dim": 128,
        "cross_attn_norm": True, "eps": 1e-06, "ffn_dim": dit.ffn_dim, "freq_dim": 256,
        "image_dim": None, "in_channels": 16, "num_attention_heads": dit.num_attention_heads,
        "num_layers": dit.num_layers, "out_channels": 16, "patch_size": [1, 2, 2],
        "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 1024, "text_dim": 4096})
    write_json(directory / "text_encoder" / "config.json", {
        "architectures": ["UMT5EncoderModel"], "model_type": "umt5", "d_ff": text.d_ff,
        "d_kv": text.d_kv, "d_model": text.d_model, "dense_act_fn": "gelu_new",
        "feed_forward_proj": "gated-gelu", "is_gated_act": True, "layer_norm_epsilon": 1e-06,
        "num_heads": text.num_heads, "num_layers": text.num_layers,
        "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
        "vocab_size": text.vocab_size})
    write_json(directory / "vae" / "config.json", {
        "_class_name": "AutoencoderKLWan", "attn_scales": [], "base_dim": 96, "dim_mult": [1, 2, 4, 4],
        "dropout": 0.0, "latents_mean": list(LATENTS_MEAN), "latents_std": list(LATENTS_STD),
        "num_res_blocks": 2, "temperal_downsample": [False, True, True], "z_dim": 16})
    write_json(directory / "scheduler" / "scheduler_config.json", {
        "_class_name": "UniPCMultistepScheduler", "flow_shift": spec["shift"],
        "num_train_timesteps": 1000, "prediction_type": "flow_prediction", "solver_order": 2,
        "use_flow_sigmas": True})
    tokenizer_dir = directory / "tokenizer"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    (tokenizer_dir / "spiece.model").write_bytes(train_sentencepiece(700))
    from transformers import T5Tokenizer
    T5Tokenizer.from_pretrained(str(tokenizer_dir), extra_ids=0).save_pretrained(str(tokenizer_dir))
    return {
        "dit_params": write_component(directory / "transformer", lambda: WanTransformer3DModel(dit),
                                      "diffusion_pytorch_model", 0),
        "text_encoder_params": write_component(directory / "text_encoder",
                                               lambda: UMT5EncoderModel(text), "model", 1),
        "vae_decoder_params": write_component(directory / "vae",
                                              lambda: AutoencoderKLWanDecoder(vae),
                                              "diffusion_pytorch_model", 2),
    }


def pipeline_dir(work: Path, model: str) -> Path:
    return work / f"Wan2.1-T2V-{model.upper()}-random-Diffusers"


def peak_rss(command) -> float:
    """GiB; a fresh parent process so that RUSAGE_CHILDREN sees this command only."""
    result = subprocess.run([sys.executable, "-c", PEAK_PROBE, *command], check=True,
                            capture_output=True, text=True)
    sys.stderr.write(result.stderr)
    return int(result.stdout.split()[-1]) / 2 ** 20  # KiB -> GiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--work", type=Path, required=True, help="scratch directory (large)")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--reuse", action="store_true",
                        help="export the checkpoint an earlier run left in --work")
    args = parser.parse_args()
    pipeline = pipeline_dir(args.work, args.model)
    bundle = args.work / f"bundle-{args.model}-{args.dtype}"
    shutil.rmtree(bundle, ignore_errors=True)
    result = {"model": args.model, "dtype": args.dtype, "torch": torch.__version__,
              "cpus": os.cpu_count()}
    if not (args.reuse and (pipeline / "model_index.json").is_file()):
        shutil.rmtree(pipeline, ignore_errors=True)
        started = time.monotonic()
        result.update(write_pipeline(pipeline, args.model))
        result["write_checkpoint_seconds"] = time.monotonic() - started
    result["checkpoint_gib"] = sum(f.stat().st_size for f in pipeline.rglob("*.safetensors")) / 2 ** 30
    print(f"checkpoint: {result['checkpoint_gib']:.1f} GiB", flush=True)
    baseline = peak_rss([sys.executable, "-c", "import safetensors, transformers; "
                         "from transformers import AutoTokenizer; import radial_export.checkpoint; "
                         "from radial_export.ops import load_radial_ops; load_radial_ops()"])
    started = time.monotonic()
    export = peak_rss([sys.executable, "-m", "radial_export", "--from", str(pipeline), "--out",
                       str(bundle), "--dtype", args.dtype])
    result["export_seconds"] = time.monotonic() - started
    sizes = {p.name: p.stat().st_size / 2 ** 30 for p in bundle.glob("*.pt")}
    result.update({"baseline_rss_gib": baseline, "export_rss_gib": export,
                   "export_rss_above_baseline_gib": export - baseline, "bundle_gib": sizes,
                   "peak_rss_self_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20})
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
