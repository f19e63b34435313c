"""Real-size timing of the worker's models on a GPU: the exact Wan2.1-T2V-1.3B / -14B configurations
with random weights (timing does not depend on the values), in bf16, scripted with torch.jit.script
exactly as the exporter scripts them, run the way the C++ pipeline runs them (one batch-2 DiT call
per denoising step: prompt and negative prompt for classifier-free guidance).

Measures, dense vs radial attention:
- one DiT denoising step: time (CUDA events, median of --repeats after a warm-up call), peak GPU
  memory, and the share of the step's GPU time in self-attention (the radial op) and cross-attention
  (SDPA), from a torch.profiler trace of one step;
- the text encoder (UMT5-XXL, batch 2 x 512 tokens) and the VAE decode of the final latents: time
  and peak memory;
- the projected 50-step time with `--dense-steps` dense warm-up steps, against all-dense.
All three modules stay resident on the GPU together, as in the worker; the peak over the whole run
is printed too.

  RADIAL_OPS_LIBRARY=build-gpu/kernels/libradial_ops.so PYTHONPATH=worker/exporter \
      python3 worker/bench/bench_wan.py --model 14b --out $OUT
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from radial_export.dit import WanTransformer3DModel
from radial_export.ops import load_radial_ops
from radial_export.random_bundle import LATENTS_MEAN, LATENTS_STD, PRESETS
from radial_export.text_encoder import UMT5EncoderModel
from radial_export.vae import AutoencoderKLWanDecoder, VAEConfig

# The sizes the issue names for each published configuration (random_bundle.PRESETS); decay 0.2 and
# sink on are Radial Attention's Wan settings.
SIZES = {"1.3b": (480, 832, 81), "14b": (768, 1280, 69)}

SELF_ATTENTION_KERNELS = ("AttentionSm90Kernel", "RadialAttentionSm80Kernel")
CROSS_ATTENTION_MARKERS = ("flash", "fmha", "cudnn", "attention", "sdpa")


def gib(n_bytes: float) -> float:
    return n_bytes / 2 ** 30


PEAKS = []


def timed(fn, repeats: int):
    """Median seconds of `repeats` calls (after two warm-up calls: TorchScript's profiling executor
    optimises the graph on the second), and the peak memory of a call."""
    fn()
    fn()
    torch.cuda.synchronize()
    times = []
    torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    PEAKS.append(torch.cuda.max_memory_allocated())
    return statistics.median(times), PEAKS[-1], times


def attention_shares(fn):
    """Fractions of one call's GPU kernel time in self-attention and in cross-attention."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    total = self_attn = cross = 0.0
    kernels = {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        duration = event.device_time
        total += duration
        kernels[event.name] = kernels.get(event.name, 0.0) + duration
        if any(name in event.name for name in SELF_ATTENTION_KERNELS):
            self_attn += duration
        elif any(marker in event.name.lower() for marker in CROSS_ATTENTION_MARKERS):
            cross += duration
    top = sorted(kernels.items(), key=lambda item: -item[1])[:8]
    return self_attn / total, cross / total, [(name[:90], share / total) for name, share in top]


def build(factory, dtype):
    """Constructs a module directly on the GPU in `dtype` (random weights, no fp32 host copy).

    The modules create their non-persistent buffers (RoPE tables, latent statistics) on the CPU
    whatever the default device, as the exporter needs them for meta-device builds; .to("cuda")
    moves those (parameters are already there, and buffers keep their dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda"):
            module = factory().eval()
    finally:
        torch.set_default_dtype(previous)
    return torch.jit.script(module.to("cuda"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SIZES), required=True)
    parser.add_argument("--size", type=int, nargs=3, metavar=("HEIGHT", "WIDTH", "FRAMES"))
    parser.add_argument("--decay", type=float, default=0.2)
    parser.add_argument("--no-sink", action="store_true")
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--dense-layers", type=int, default=1)
    parser.add_argument("--dense-steps", type=int, default=12, help="dense warm-up steps of --steps")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vae-chunk", type=int, default=1, help="latent frames per VAE decoder call")
    parser.add_argument("--skip-text-encoder", action="store_true")
    parser.add_argument("--no-texpr-fuser", dest="texpr_fuser", action="store_false",
                        help="turn TorchScript's elementwise fuser (NNC) off; the worker has it on "
                             "for CUDA")
    parser.add_argument("--bundle", type=Path,
                        help="load the modules from this bundle (e.g. radial_export --random "
                             "wan2.1-t2v-14b) instead of building them in memory")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    load_radial_ops()
    # As the C++ worker (pipeline.cc) runs TorchScript on this device.
    torch._C._jit_set_texpr_fuser_enabled(args.texpr_fuser)
    torch.manual_seed(0)
    dtype = torch.bfloat16
    preset = PRESETS[f"wan2.1-t2v-{args.model}"]
    height, width, frames = args.size or SIZES[args.model]
    latent_shape = (16, (frames - 1) // 4 + 1, height // 8, width // 8)
    tokens = latent_shape[1] * (latent_shape[2] // 2) * (latent_shape[3] // 2)
    sink = not args.no_sink
    result = {"model": args.model, "size": [height, width, frames], "latent": list(latent_shape),
              "tokens": tokens, "decay": args.decay, "sink": sink, "block": args.block,
              "dense_layers": args.dense_layers, "texpr_fuser": args.texpr_fuser, "device": torch.cuda.get_device_name(),
              "torch": torch.__version__}
    density = torch.ops.radial.block_mask(latent_shape[1], tokens // latent_shape[1], args.decay, sink,
                                          args.block).float().mean().item()
    result["mask_density"] = density
    print(f"Wan2.1 {args.model} at {height}x{width}x{frames}: latent {latent_shape}, {tokens} tokens, "
          f"radial mask density {density:.3f} (decay {args.decay}, sink {sink}, block {args.block})",
          flush=True)

    started = time.monotonic()
    text_encoder = None
    if args.bundle:
        # The bundle's TorchScript files, loaded as the worker loads them (torch::jit::load).
        manifest = json.loads((args.bundle / "manifest.json").read_text())
        result["bundle"] = {"path": str(args.bundle), "name": manifest["name"], "dtype": manifest["dtype"]}

        def load(section):
            return torch.jit.load(str(args.bundle / manifest[section]["file"]), map_location="cuda")
        if not args.skip_text_encoder:
            text_encoder = load("text_encoder")
        dit, vae = load("dit"), load("vae")
        how = f"loaded {manifest['name']} ({manifest['dtype']})"
    else:
        if not args.skip_text_encoder:
            text_encoder = build(lambda: UMT5EncoderModel(preset["text_encoder"]), dtype)
        dit = build(lambda: WanTransformer3DModel(preset["dit"]), dtype)
        vae = build(lambda: AutoencoderKLWanDecoder(VAEConfig(
            latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD, decode_chunk_frames=args.vae_chunk)),
            dtype)
        how = "built and scripted"
    torch.cuda.synchronize()
    result["weights_gib"] = gib(torch.cuda.memory_allocated())
    print(f"{how} in {time.monotonic() - started:.0f} s; weights on the GPU: "
          f"{result['weights_gib']:.1f} GiB", flush=True)

    with torch.inference_mode():
        if text_encoder is not None:
            ids = torch.randint(0, 256384, (2, 512), device="cuda")
            mask = torch.ones(2, 512, dtype=torch.long, device="cuda")
            mask[:, 40:] = 0
            seconds, peak, _ = timed(lambda: text_encoder(ids, mask), args.repeats)
            context = text_encoder(ids, mask).to(dtype)
            result["text_encoder"] = {"seconds": seconds, "peak_gib": gib(peak)}
            print(f"text encoder (batch 2 x 512): {seconds * 1000:.0f} ms, peak {gib(peak):.1f} GiB",
                  flush=True)
        else:
            context = torch.randn(2, 512, 4096, dtype=dtype, device="cuda")

        latents = torch.randn(2, *latent_shape, dtype=dtype, device="cuda")
        timestep = torch.full((2,), 999.0, device="cuda")
        steps = {}
        for mode, dense in (("dense", True), ("radial", False)):
            def step(dense=dense):
                return dit(latents, timestep, context, dense, args.dense_layers, args.decay, sink,
                           args.block)
            seconds, peak, times = timed(step, args.repeats)
            try:
                self_share, cross_share, top = attention_shares(step)
            except Exception as error:  # the timing stands without the breakdown
                print(f"profiler failed: {error!r}", flush=True)
                self_share, cross_share, top = float("nan"), float("nan"), []
            steps[mode] = {"seconds": seconds, "all_seconds": times, "peak_gib": gib(peak),
                           "self_attention_share": self_share, "cross_attention_share": cross_share,
                           "top_kernels": top}
            print(f"DiT step {mode}: {seconds:.3f} s (runs {', '.join(f'{t:.3f}' for t in times)}), "
                  f"peak {gib(peak):.1f} GiB, self-attention {self_share:.1%}, cross-attention "
                  f"{cross_share:.1%} of GPU time", flush=True)
        result["dit_step"] = steps
        dense_s, radial_s = steps["dense"]["seconds"], steps["radial"]["seconds"]
        warm = min(args.dense_steps, args.steps)
        projected_radial = warm * dense_s + (args.steps - warm) * radial_s
        projected_dense = args.steps * dense_s
        result["projection"] = {"steps": args.steps, "dense_steps": warm, "dense_seconds": projected_dense,
                                "radial_seconds": projected_radial,
                                "speedup": projected_dense / projected_radial,
                                "step_speedup": dense_s / radial_s}
        print(f"step speedup {dense_s / radial_s:.2f}x; {args.steps} steps: dense {projected_dense:.0f} s, "
              f"radial with {warm} dense steps {projected_radial:.0f} s -> "
              f"{projected_dense / projected_radial:.2f}x", flush=True)

        final = latents[:1].contiguous()
        seconds, peak, _ = timed(lambda: vae(final), 1)
        result["vae_decode"] = {"seconds": seconds, "peak_gib": gib(peak), "chunk_frames": args.vae_chunk}
        print(f"VAE decode ({frames} frames, chunk {args.vae_chunk}): {seconds:.2f} s, peak "
              f"{gib(peak):.1f} GiB", flush=True)
    result["peak_gib_whole_run"] = gib(max(PEAKS))
    _, total = torch.cuda.mem_get_info()
    result["gpu_total_gib"] = gib(total)
    print(f"GPU memory: {gib(total):.0f} GiB in all; peak over the run {result['peak_gib_whole_run']:.1f} GiB "
          f"(all models resident)", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        suffix = ("" if args.texpr_fuser else "_nofuser") + ("_bundle" if args.bundle else "")
        (args.out / f"bench_wan_{args.model}{suffix}.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
