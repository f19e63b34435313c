"""A few small radial attention calls for memory checking; exits 0 when every result is right.

    compute-sanitizer --tool memcheck python3 tests/kernels/sanitizer_case.py
    compute-sanitizer --tool racecheck python3 tests/kernels/sanitizer_case.py   (slow)

Library: RADIAL_OPS_LIBRARY (default <repo>/build/kernels/libradial_ops.so). Each case runs with
every kernel variant that can be forced (RADIAL_ATTENTION_KERNEL = sm80, and sm90 where available)
and with the default selection, and checks out/lse against a float64 reference.
"""

import math
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
LIBRARY = os.environ.get("RADIAL_OPS_LIBRARY", str(REPO / "build" / "kernels" / "libradial_ops.so"))
ENV_KERNEL = "RADIAL_ATTENTION_KERNEL"

# (label, frames, tokens_per_frame, batch, heads, head_dim, block, decay, sink, dense)
# The first and last cases have tile rows that keep only their diagonal tile (docs/radial-attention.md):
# a ragged 6-token last tile, and n = 80 (one tile smaller than a TMA box).
CASES = [
    ("bf16 d128 ragged n=1030", 5, 206, 2, 2, 128, 128, 0.2, True, False),
    ("bf16 d64 block64 n=1000", 5, 200, 2, 2, 64, 64, 1.0, False, False),
    ("bf16 d128 dense n=1000", 5, 200, 2, 2, 128, 128, 1.0, True, True),
    ("bf16 d128 diagonal-only n=80", 5, 16, 2, 2, 128, 128, 1.0, True, False),
]


def load():
    try:
        if hasattr(torch.ops.radial, "attention"):
            return
    except Exception:  # noqa: BLE001
        pass
    torch.ops.load_library(LIBRARY)


def reference(q, k, v, tile_mask, n, block):
    b, _, h, d = q.shape
    m = tile_mask.to(q.device).repeat_interleave(block, 0).repeat_interleave(block, 1)[:n, :n]
    empty = ~m.any(1)
    qd, kd, vd = (x.transpose(1, 2).double() for x in (q, k, v))  # [b,h,n,d]
    s = qd @ kd.transpose(-1, -2) / math.sqrt(d)
    s.masked_fill_(~m, float("-inf"))
    lse = torch.logsumexp(s, -1)
    p = torch.exp(s - lse.unsqueeze(-1)).masked_fill_(empty.unsqueeze(-1), 0.0)
    return (p @ vd).transpose(1, 2), lse, empty


def run_case(case, variant):
    label, f, s, b, h, d, block, decay, sink, dense = case
    n = f * s
    g = torch.Generator(device="cuda").manual_seed(1234 + n + d + block)
    q, k, v = (torch.randn((b, n, h, d), generator=g, device="cuda").to(torch.bfloat16) for _ in range(3))
    tiles = -(-n // block)
    tm = torch.ones(tiles, tiles, dtype=torch.bool) if dense else torch.ops.radial.block_mask(f, s, decay, sink, block)
    out = torch.ops.radial.attention(q, k, v, f, s, decay, sink, block, dense)
    out2, lse = torch.ops.radial.attention_lse(q, k, v, f, s, decay, sink, block, dense)
    torch.cuda.synchronize()
    ref, ref_lse, empty = reference(q, k, v, tm, n, block)
    problems = []
    for name, o in (("attention", out), ("attention_lse", out2)):
        if not torch.isfinite(o).all():
            problems.append(f"{name}: non-finite output")
        err = (o.double() - ref).norm().item() / max(ref.norm().item(), 1e-300)
        if not err < 1e-2:
            problems.append(f"{name}: rel err {err:.3e}")
        if empty.any() and not (o[:, empty] == 0).all():
            problems.append(f"{name}: empty rows not zero")
    if not torch.isneginf(lse[:, :, empty]).all():
        problems.append("lse: empty rows not -inf")
    full = ~empty
    lerr = (lse[:, :, full].double() - ref_lse[:, :, full]).abs().max().item() if full.any() else 0.0
    if not lerr < 1e-2:
        problems.append(f"lse: max abs err {lerr:.3e}")
    print(f"[{variant}] {label}: err {(out.double() - ref).norm().item() / ref.norm().item():.2e}, "
          f"lse err {lerr:.2e}, empty rows {int(empty.sum())} -> {'OK' if not problems else problems}", flush=True)
    return problems


def main():
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    load()
    failures = 0
    variants = ["default", "sm80"]
    if torch.cuda.get_device_capability() == (9, 0):
        variants.append("sm90")
    for variant in variants:
        if variant == "default":
            os.environ.pop(ENV_KERNEL, None)
        else:
            os.environ[ENV_KERNEL] = variant
        for case in CASES:
            try:
                problems = run_case(case, variant)
            except RuntimeError as e:
                if variant == "sm90" and "unavailable" in str(e).lower():
                    print(f"[sm90] {case[0]}: unavailable ({str(e).splitlines()[0]})", flush=True)
                    continue
                raise
            failures += bool(problems)
    torch.cuda.synchronize()
    print("FAILED" if failures else "ALL OK", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
