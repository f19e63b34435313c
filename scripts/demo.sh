#!/usr/bin/env bash
# Installs what is missing, builds, and demonstrates what the product has today: the radial
# attention operator. (Video generation through the gRPC service arrives with the end-to-end work;
# this script will then generate out.mp4 with the embedded default model.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh >/dev/null
RADIAL_OPS_LIBRARY=${RADIAL_OPS_LIBRARY:-build/kernels/libradial_ops.so} .venv/bin/python - <<'PY'
import os, time, torch
torch.ops.load_library(os.environ["RADIAL_OPS_LIBRARY"])
ops = torch.ops.radial
print("radial tile masks (B = 128) of the shared doc's geometries:")
for name, f, s, decay, sink in [("Wan2.1 480x832x81", 21, 1560, 0.2, True),
                                ("Wan2.1 768x1280x69", 18, 3840, 0.2, True),
                                ("HunyuanVideo 768x1280x117", 30, 3840, 0.95, False)]:
    t0 = time.perf_counter(); m = ops.block_mask(f, s, decay, sink); ms = (time.perf_counter() - t0) * 1e3
    print(f"  {name:27s} {f:3d} frames x {s:4d} tokens: {m.shape[0]}^2 tiles, density {m.float().mean():.4f} "
          f"(ideal speedup {1 / m.float().mean():.2f}x), built in {ms:.0f} ms")
f, s, h, d = 9, 256, 4, 64
q, k, v = (torch.randn(1, f * s, h, d) for _ in range(3))
t0 = time.perf_counter(); out, lse = ops.attention_lse(q, k, v, f, s, 1.0, True, 64); t_radial = time.perf_counter() - t0
t0 = time.perf_counter(); dense = ops.attention(q, k, v, f, s, dense=True); t_dense = time.perf_counter() - t0
m = ops.block_mask(f, s, 1.0, True, 64)
print(f"CPU reference op, {f} frames x {s} tokens, {h} heads, head_dim {d}, block 64: density {m.float().mean():.3f}, "
      f"radial {t_radial * 1e3:.0f} ms vs dense {t_dense * 1e3:.0f} ms; "
      f"relative difference radial vs dense {((out - dense).norm() / dense.norm()).item():.3f}")
PY
