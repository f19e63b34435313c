#!/usr/bin/env python3
"""Radial attention forward benchmark: the radial CUDA op vs cuDNN SDPA, flash SDPA and
FlexAttention given the same block mask. One command, one run, one table.

    python3 kernels/bench/bench_attention.py                       # all cases, ~4-6 min on an H100
    python3 kernels/bench/bench_attention.py --out results/bench   # also writes JSON + markdown
    python3 kernels/bench/bench_attention.py --cases wan480_d02,wan14b_768_d02 --reps 20
    python3 kernels/bench/bench_attention.py --skip-dense-huge     # no dense SDPA at n = 460800
    python3 kernels/bench/bench_attention.py --tiny                # CPU smoke test of the script
    python3 kernels/bench/bench_attention.py --list                # cases and a time estimate

Method (shared/performance.md "Measuring", device METHOD.md): bf16, batch 1, non-causal,
random normal inputs (never zeros), CUDA events around each call, warm-up first, median of the
timed calls, input sets rotated when they are small enough to sit in L2. The radial op is timed
once per kernel variant (RADIAL_ATTENTION_KERNEL = sm80 / sm90; a variant that cannot be forced is
reported "unavailable"). SDPA and FlexAttention get contiguous [b, h, n, d] inputs (their native
layout), the radial op contiguous [b, n, h, d] (the layout video DiTs produce); the values are
the same.

Every timed method's output is checked: on sampled query tiles of two heads against a float64
reference with the method's mask (radial mask for radial/Flex, none for dense SDPA), and the whole
radial output against the whole FlexAttention output. A radial error above 2e-2 marks the row
WRONG and the script exits with status 3 after writing its results.

Columns: dense-eq TF/s = 4 n^2 d H batch / t; per-block TF/s = dense-eq x tile density (the
rate over the tiles a sparse kernel computes; equal to dense-eq for dense methods);
x cuDNN = cuDNN SDPA time / method time.
"""

import argparse
import datetime
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LIBRARY = str(REPO / "build" / "kernels" / "libradial_ops.so")
ENV_KERNEL = "RADIAL_ATTENTION_KERNEL"
VARIANTS = ("sm80", "sm90")
CHECK_TOL = 2e-2          # radial vs float64 (sampled rows) and radial vs Flex (whole output)
HUGE_TOKENS = 200_000     # cases above this count as "huge" (fewer reps, --skip-dense-huge)
SLOW_CALL_S = 1.0         # a call slower than this gets --huge-reps timed calls and no extra warm-up
L2_BYTES = 50 << 20

# name -> geometry. frames f, tokens per frame s, n = f*s. Batch 1, bf16.
CASES = {
    "wan480_d02": dict(label="Wan 480x832x81, decay 0.2", frames=21, s=1560, decay=0.2, sink=True, heads=12, hdim=128),
    "wan480_d10": dict(label="Wan 480x832x81, decay 1.0", frames=21, s=1560, decay=1.0, sink=True, heads=12, hdim=128),
    "wan480_d02_h64": dict(label="Wan 480x832x81, decay 0.2, hdim 64", frames=21, s=1560, decay=0.2, sink=True, heads=24, hdim=64),
    "wan14b_768_d02": dict(label="Wan-14B 768x1280x69, decay 0.2", frames=18, s=3840, decay=0.2, sink=True, heads=40, hdim=128),
    "hunyuan_768_d095": dict(label="HunyuanVideo 768x1280x117, decay 0.95", frames=30, s=3840, decay=0.95, sink=False, heads=24, hdim=128),
    # sink ON here: performance.md's anchor for this geometry has density 0.116, which is the sink-on
    # mask (sink off gives 0.1088); the sink-off mask is the extra case below.
    "hunyuan_509_d1": dict(label="HunyuanVideo 720x1280x509, decay 1", frames=128, s=3600, decay=1.0, sink=True, heads=24, hdim=128),
    "hunyuan_509_d1_nosink": dict(label="HunyuanVideo 720x1280x509, decay 1, sink off", frames=128, s=3600, decay=1.0, sink=False, heads=24, hdim=128),
}
# what runs without --cases (the sink-off 509-frame case only on request: it repeats the dense runs)
DEFAULT_CASES = ["wan480_d02", "wan480_d10", "wan480_d02_h64", "wan14b_768_d02", "hunyuan_768_d095", "hunyuan_509_d1"]
# CPU smoke-test geometries (--tiny): one ragged, one aligned.
TINY_CASES = {
    "tiny_ragged": dict(label="tiny ragged n=3600", frames=12, s=300, decay=0.5, sink=True, heads=2, hdim=64),
    "tiny_aligned": dict(label="tiny aligned n=3200", frames=16, s=200, decay=1.0, sink=False, heads=2, hdim=128),
}
# Rough H100 rates (TF/s) for the up-front time estimate only (performance.md anchors).
EST_RATE = {"cudnn": 600e12, "flash": 350e12, "flex": 400e12, "radial": 400e12}
EST_FLEX_COMPILE_S = 40.0


def log(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Library and environment
# ---------------------------------------------------------------------------------------------


def load_library(path):
    try:
        if hasattr(torch.ops.radial, "attention"):
            return "already loaded"
    except Exception:  # noqa: BLE001
        pass
    if not os.path.exists(path):
        raise SystemExit(f"radial ops library not found: {path} (build it or set RADIAL_OPS_LIBRARY)")
    torch.ops.load_library(path)
    return path


def git_commit():
    # The GPU machine gets a copy of the working tree without .git: the caller passes the commit.
    if os.environ.get("RADIAL_COMMIT"):
        return os.environ["RADIAL_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
        if commit != "unknown":
            st = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
            if st.returncode == 0 and st.stdout.strip():
                commit += " (dirty)"
        return commit
    except Exception:  # noqa: BLE001
        return "unknown"


def environment(device, library):
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": git_commit(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "capability": ".".join(map(str, torch.cuda.get_device_capability())) if device.type == "cuda" else None,
        "library": library,
        "command": " ".join([sys.executable] + sys.argv),
        "env_kernel_at_start": os.environ.get(ENV_KERNEL),
    }
    return env


# ---------------------------------------------------------------------------------------------
# Masks: radial tile mask -> FlexAttention BlockMask
# ---------------------------------------------------------------------------------------------


def radial_tile_mask(case, block):
    return torch.ops.radial.block_mask(case["frames"], case["s"], case["decay"], case["sink"], block).to(torch.bool)


def _kept_first_indices(mask):
    """[T, T] bool -> (counts [T] int32, indices [T, T] int32): kept columns first, increasing."""
    counts = mask.sum(dim=1, dtype=torch.int32)
    # stable sort of 0 (kept) before 1 (dropped) keeps the kept column ids in increasing order
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices.to(torch.int32)
    return counts, order


def flex_block_mask(tile_mask, n, block, device):
    """BlockMask equal to the tile mask at BLOCK_SIZE = block, for sequence length n.

    Kept tiles are passed as *full* blocks (no mask_mod runs on them). When n is not a multiple of
    block, the kept tiles of the last (ragged) key column are passed as *partial* blocks, whose
    mask_mod adds kv_idx < n, so keys past n are never attended even if the kernel did not bound them.
    """
    from torch.nn.attention.flex_attention import BlockMask

    tiles = -(-n // block)
    m = tile_mask.to(device="cpu", dtype=torch.bool)
    assert tuple(m.shape) == (tiles, tiles), (tuple(m.shape), tiles)
    full = m.clone()
    partial = torch.zeros_like(m)
    ragged = n % block != 0
    if ragged:
        partial[:, -1] = m[:, -1]
        full[:, -1] = False
    f_cnt, f_idx = _kept_first_indices(full)
    p_cnt, p_idx = _kept_first_indices(partial)

    def to_dev(x):
        return x[None, None].contiguous().to(device)  # [B=1, H=1, ...], broadcast over batch/heads

    # The mask_mod states the same mask element-wise. The fused (compiled) kernel evaluates it only
    # on partial blocks, i.e. the ragged last key column; eager FlexAttention ignores the block lists
    # and evaluates it everywhere, so it must be exact on its own.
    tiles_dev = m.to(device)
    blk = int(block)
    if ragged:
        kv_len = int(n)

        def mask_mod(b, h, q_idx, kv_idx):  # noqa: ARG001 - flex mask_mod signature
            return tiles_dev[q_idx // blk, kv_idx // blk] & (kv_idx < kv_len)
    else:

        def mask_mod(b, h, q_idx, kv_idx):  # noqa: ARG001
            return tiles_dev[q_idx // blk, kv_idx // blk]

    return BlockMask.from_kv_blocks(
        to_dev(p_cnt), to_dev(p_idx), to_dev(f_cnt), to_dev(f_idx),
        BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(n, n),
    )


def block_mask_to_dense_tiles(bm):
    """Inverse of flex_block_mask for checking: union of partial and full blocks -> [T, T] bool."""
    kv_num, kv_idx = bm.kv_num_blocks[0, 0].cpu(), bm.kv_indices[0, 0].cpu()
    t = kv_num.shape[0]
    out = torch.zeros(t, kv_idx.shape[-1], dtype=torch.bool)
    for nums, idx in ((kv_num, kv_idx), (bm.full_kv_num_blocks[0, 0].cpu(), bm.full_kv_indices[0, 0].cpu())):
        cols = torch.arange(idx.shape[-1])[None, :] < nums[:, None].to(torch.int64)
        rows = torch.arange(t)[:, None].expand_as(idx)
        out[rows[cols], idx[cols].to(torch.int64)] = True
    return out[:, :t]


# ---------------------------------------------------------------------------------------------
# Inputs, reference checks
# ---------------------------------------------------------------------------------------------


def make_input_sets(case, batch, dtype, device, seed, max_sets):
    n, h, d = case["frames"] * case["s"], case["heads"], case["hdim"]
    per_set = 3 * batch * n * h * d * torch.tensor([], dtype=dtype).element_size()
    nsets = 3 if per_set < 3 * L2_BYTES else (2 if per_set < (2 << 30) else 1)
    nsets = max(1, min(nsets, max_sets))
    g = torch.Generator(device=device).manual_seed(seed)
    sets = []
    for _ in range(nsets):
        bnhd = tuple(torch.randn((batch, n, h, d), generator=g, device=device, dtype=dtype) for _ in range(3))
        bhnd = tuple(x.transpose(1, 2).contiguous() for x in bnhd)
        sets.append({"bnhd": bnhd, "bhnd": bhnd})
    return sets, per_set


def sample_rows(n, block, heads):
    tiles = -(-n // block)
    rows = sorted({0, tiles // 3, tiles // 2, tiles - 1})
    hs = sorted({0, heads - 1})
    return [(a, h) for h in hs for a in rows]


def reference_rows(inputs, tile_mask, n, block, samples, dense):
    """float64 attention for query tile a of head h, batch 0: {(a, h): [rows, d] float64}."""
    q, k, v = inputs["bnhd"]
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d)
    refs = {}
    by_head = {}
    for a, h in samples:
        by_head.setdefault(h, []).append(a)
    for h, rows in by_head.items():
        kh = k[0, :, h, :].to(torch.float64)
        vh = v[0, :, h, :].to(torch.float64)
        for a in rows:
            r0, r1 = a * block, min(n, (a + 1) * block)
            qa = q[0, r0:r1, h, :].to(torch.float64)
            if dense:
                keep = torch.ones(n, dtype=torch.bool, device=q.device)
            else:
                keep = tile_mask[a].to(q.device).repeat_interleave(block)[:n]
            if not keep.any():
                refs[(a, h)] = torch.zeros_like(qa)
                continue
            s = (qa @ kh.T) * scale
            s.masked_fill_(~keep[None, :], float("-inf"))
            refs[(a, h)] = torch.softmax(s, dim=-1) @ vh
            del s
        del kh, vh
    return refs


def rows_error(out, layout, refs, n, block):
    num = den = 0.0
    for (a, h), ref in refs.items():
        r0, r1 = a * block, min(n, (a + 1) * block)
        o = out[0, r0:r1, h, :] if layout == "bnhd" else out[0, h, r0:r1, :]
        o = o.to(torch.float64)
        if not torch.isfinite(o).all():
            return float("nan")
        num += torch.sum((o - ref) ** 2).item()
        den += torch.sum(ref ** 2).item()
    return math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else float("inf"))


def whole_error(a_bnhd, b_bhnd, chunk=8192):
    """||a - b|| / ||b|| over the whole output, a in [b,n,h,d], b in [b,h,n,d], chunked in fp32."""
    num = den = 0.0
    n = a_bnhd.shape[1]
    for i in range(0, n, chunk):
        x = a_bnhd[:, i:i + chunk].float()
        y = b_bhnd[:, :, i:i + chunk].transpose(1, 2).float()
        if not torch.isfinite(x).all():
            return float("nan")
        num += torch.sum((x - y) ** 2, dtype=torch.float64).item()
        den += torch.sum(y ** 2, dtype=torch.float64).item()
    return math.sqrt(num / den) if den > 0 else float("inf")


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_method(fn, sets, device, warmup, reps, huge_reps):
    """Returns (stats, out) with out the result of the last timed call, which always uses set 0."""
    nsets = len(sets)
    t0 = time.perf_counter()
    out = fn(sets[0])
    sync(device)
    first_s = time.perf_counter() - t0
    del out
    # second call estimates the steady time (the first may include compilation / plan building)
    t0 = time.perf_counter()
    out = fn(sets[1 % nsets])
    sync(device)
    est_s = time.perf_counter() - t0
    del out
    if est_s > SLOW_CALL_S:
        nreps = max(1, min(reps, huge_reps))
    else:
        nreps = reps
        for i in range(max(0, warmup - 2)):
            out = fn(sets[i % nsets])
            del out
        sync(device)
    times = []
    if device.type == "cuda":
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(nreps)]
        for i in range(nreps):
            args = sets[(nreps - 1 - i) % nsets]
            ev[i][0].record()
            out = fn(args)
            ev[i][1].record()
        torch.cuda.synchronize()
        times = [s.elapsed_time(e) for s, e in ev]
    else:
        for i in range(nreps):
            args = sets[(nreps - 1 - i) % nsets]
            t0 = time.perf_counter()
            out = fn(args)
            times.append((time.perf_counter() - t0) * 1e3)
    stats = {
        "ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times),
        "reps": nreps, "first_call_s": first_s, "times_ms": times,
    }
    return stats, out


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


class VariantEnv:
    """Sets RADIAL_ATTENTION_KERNEL for the duration of a block (None = unset)."""

    def __init__(self, value):
        self.value = value

    def __enter__(self):
        self.old = os.environ.get(ENV_KERNEL)
        if self.value is None:
            os.environ.pop(ENV_KERNEL, None)
        else:
            os.environ[ENV_KERNEL] = self.value

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop(ENV_KERNEL, None)
        else:
            os.environ[ENV_KERNEL] = self.old
        return False


def radial_fn(case, block, dense=False):
    f, s, decay, sink = case["frames"], case["s"], case["decay"], case["sink"]

    def fn(inp):
        q, k, v = inp["bnhd"]
        return torch.ops.radial.attention(q, k, v, f, s, decay, sink, block, dense)

    return fn


def sdpa_fn(backend):
    from torch.nn.attention import sdpa_kernel

    def fn(inp):
        q, k, v = inp["bhnd"]
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v)

    return fn


_FLEX_COMPILED = None


def flex_fn(block_mask, compiled):
    global _FLEX_COMPILED
    from torch.nn.attention.flex_attention import flex_attention

    if compiled:
        if _FLEX_COMPILED is None:
            import torch._dynamo.config as dcfg

            # every case (new shapes, new ragged mask_mod closure) recompiles; never fall back to eager
            for key in ("cache_size_limit", "recompile_limit"):
                if hasattr(dcfg, key):
                    setattr(dcfg, key, max(64, getattr(dcfg, key)))
            _FLEX_COMPILED = torch.compile(flex_attention, dynamic=False)
        impl = _FLEX_COMPILED
    else:
        impl = flex_attention

    def fn(inp):
        q, k, v = inp["bhnd"]
        return impl(q, k, v, block_mask=block_mask)

    return fn


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------


def run_case(name, case, args, device, variants_ok, baseline_name):
    block = 128
    batch = 1
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # the CPU op is fp32-only
    f, s, h, d = case["frames"], case["s"], case["heads"], case["hdim"]
    n = f * s
    huge = n > HUGE_TOKENS
    t_case = time.perf_counter()
    tile_mask = radial_tile_mask(case, block)
    density = tile_mask.float().mean().item()
    flops = 4.0 * n * n * d * h * batch
    log(f"\n=== {name}: {case['label']}  f={f} s={s} n={n} heads={h} hdim={d} decay={case['decay']} "
        f"sink={'on' if case['sink'] else 'off'}  tiles={tile_mask.shape[0]}^2 kept={int(tile_mask.sum())} "
        f"density={density:.4f}")

    sets, set_bytes = make_input_sets(case, batch, dtype, device, seed=zlib.crc32(name.encode()), max_sets=args.max_sets)
    log(f"    inputs: {len(sets)} set(s) of q,k,v = {set_bytes / 2**20:.0f} MiB each (x2 layouts)")
    samples = sample_rows(n, block, h)
    ref_sparse = reference_rows(sets[0], tile_mask, n, block, samples, dense=False)
    ref_dense = reference_rows(sets[0], tile_mask, n, block, samples, dense=True)

    methods = []  # (method name, fn, layout, is_dense, env)
    for var in VARIANTS:
        if device.type != "cuda" or var not in variants_ok:
            continue
        methods.append((f"radial[{var}]", radial_fn(case, block), "bnhd", False, var))
    if device.type != "cuda":
        methods.append(("radial[cpu]", radial_fn(case, block), "bnhd", False, None))
    if args.radial_dense:
        methods.append(("radial-dense", radial_fn(case, block, dense=True), "bnhd", True, None))
    from torch.nn.attention import SDPBackend

    if device.type == "cuda":
        if not (huge and args.skip_dense_huge):
            methods.append(("cudnn-sdpa", sdpa_fn(SDPBackend.CUDNN_ATTENTION), "bhnd", True, None))
            methods.append(("flash-sdpa", sdpa_fn(SDPBackend.FLASH_ATTENTION), "bhnd", True, None))
    else:
        methods.append(("math-sdpa", sdpa_fn(SDPBackend.MATH), "bhnd", True, None))
    bm = None
    if not args.no_flex:
        try:
            bm = flex_block_mask(tile_mask, n, block, device)
            back = block_mask_to_dense_tiles(bm)
            assert torch.equal(back, tile_mask), "BlockMask does not round-trip to the tile mask"
            compiled = device.type == "cuda" or args.tiny_compile
            methods.append(("flex" if compiled else "flex-eager", flex_fn(bm, compiled), "bhnd", False, None))
        except Exception as e:  # noqa: BLE001
            log(f"    flex: BlockMask construction failed: {type(e).__name__}: {e}")

    rows = []
    outs = {}
    for mname, fn, layout, is_dense, env in methods:
        t0 = time.perf_counter()
        row = {"case": name, "label": case["label"], "n": n, "heads": h, "hdim": d, "batch": batch,
               "density": density, "method": mname}
        try:
            with VariantEnv(env):
                stats, out = time_method(fn, sets, device, args.warmup, args.reps, args.huge_reps)
            row.update(stats)
            ms = stats["ms"]
            row["dense_eq_tflops"] = flops / (ms * 1e-3) / 1e12
            row["per_block_tflops"] = row["dense_eq_tflops"] * (1.0 if is_dense else density)
            row["check_err"] = rows_error(out, layout, ref_dense if is_dense else ref_sparse, n, block)
            if mname.startswith("radial[") or mname == "flex" or mname == "flex-eager":
                outs[mname] = (out, layout)
            del out
        except Exception as e:  # noqa: BLE001
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            row["error"] = f"{type(e).__name__}: {msg}"[:300]
            out = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        sync(device)
        log(f"    {mname:<14} " + (f"{row['ms']:10.3f} ms median of {row['reps']} "
                                   f"(min {row['ms_min']:.3f}, max {row['ms_max']:.3f}; first call "
                                   f"{row['first_call_s']:.2f} s)  check err {row['check_err']:.2e}"
                                   if "ms" in row else f"ERROR {row['error']}")
            + f"  [{time.perf_counter() - t0:.1f} s]")
        rows.append(row)

    # whole-output cross check radial vs Flex (same mask, same inputs: set 0)
    flex_key = "flex" if "flex" in outs else ("flex-eager" if "flex-eager" in outs else None)
    for row in rows:
        if row["method"].startswith("radial[") and row["method"] in outs and flex_key:
            row["vs_flex_err"] = whole_error(outs[row["method"]][0], outs[flex_key][0])
            log(f"    {row['method']} vs {flex_key}: whole-output rel err {row['vs_flex_err']:.2e}")
    del outs

    base = next((r for r in rows if r["method"] == baseline_name and "ms" in r), None)
    for row in rows:
        if "ms" in row and base is not None:
            row["speedup"] = base["ms"] / row["ms"]
        if row["method"].startswith("radial[") and "ms" in row:
            bad = not (row["check_err"] < CHECK_TOL) or not (row.get("vs_flex_err", 0.0) < CHECK_TOL)
            row["wrong"] = bool(bad)
            if bad:
                log(f"    !!! {row['method']} WRONG: check err {row['check_err']:.3e}, "
                    f"vs flex {row.get('vs_flex_err', float('nan')):.3e}")
    del sets, ref_sparse, ref_dense, bm
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log(f"    case time {time.perf_counter() - t_case:.1f} s")
    return rows


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

COLUMNS = ["case", "n", "heads", "hdim", "density", "method", "ms", "dense-eq TF/s", "per-block TF/s",
           "x cuDNN", "check err", "vs flex"]


def fmt_row(r):
    def f(key, spec):
        v = r.get(key)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    if "ms" not in r:
        return [r["case"], str(r["n"]), str(r["heads"]), str(r["hdim"]), f"{r['density']:.4f}", r["method"],
                "ERR", "-", "-", "-", "-", r.get("error", "")[:60]]
    method = r["method"] + (" WRONG" if r.get("wrong") else "")
    return [r["case"], str(r["n"]), str(r["heads"]), str(r["hdim"]), f"{r['density']:.4f}", method,
            f("ms", ".3f"), f("dense_eq_tflops", ".1f"), f("per_block_tflops", ".1f"), f("speedup", ".2f"),
            f("check_err", ".1e"), f("vs_flex_err", ".1e")]


def text_table(rows):
    cells = [COLUMNS] + [fmt_row(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c[i].rjust(widths[i]) if i not in (0, 5) else c[i].ljust(widths[i])
                       for i in range(len(COLUMNS))) for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown(env, rows, baseline_name):
    out = ["# Radial attention forward benchmark", ""]
    for k in ("date", "device", "capability", "torch", "cuda", "cudnn", "commit", "library", "command"):
        out.append(f"- {k}: `{env.get(k)}`")
    gpu = env.get("device") != "cpu"
    out += ["", f"{'bf16' if gpu else 'fp32 (CPU smoke test)'}, batch 1, non-causal; median of timed calls "
                f"({'CUDA events' if gpu else 'host clock'}); x cuDNN relative to "
                f"`{baseline_name}`; check err = rel. error vs float64 on sampled query tiles.", ""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "/") for c in fmt_row(r)) + " |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def estimate_seconds(names, cases, args, densities):
    total = 0.0
    for name in names:
        c = cases[name]
        n = c["frames"] * c["s"]
        flops = 4.0 * n * n * c["hdim"] * c["heads"]
        dens = densities.get(name, 0.35)
        per = {"cudnn": flops / EST_RATE["cudnn"], "flash": flops / EST_RATE["flash"],
               "flex": flops * dens / EST_RATE["flex"], "radial": flops * dens / EST_RATE["radial"]}
        if n > HUGE_TOKENS and args.skip_dense_huge:
            per.pop("cudnn")
            per.pop("flash")
        for key, t in per.items():
            mult = len(VARIANTS) if key == "radial" else 1
            calls = 2 + (min(args.reps, args.huge_reps) if t > SLOW_CALL_S else max(0, args.warmup - 2) + args.reps)
            total += mult * t * calls
        total += EST_FLEX_COMPILE_S + 5.0
    return total


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=None,
                   help=f"comma list of case names, or 'all'; default {','.join(DEFAULT_CASES)}; known: {', '.join(CASES)}")
    p.add_argument("--reps", type=int, default=None, help="timed calls per method (median); default 10 (3 with --tiny)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls per method (>= 2 always run); default 3")
    p.add_argument("--huge-reps", type=int, default=3, help=f"timed calls when one call takes > {SLOW_CALL_S} s; default 3")
    p.add_argument("--skip-dense-huge", action="store_true", help=f"skip cuDNN/flash SDPA for n > {HUGE_TOKENS}")
    p.add_argument("--no-flex", action="store_true", help="skip FlexAttention (and the radial vs Flex cross check)")
    p.add_argument("--radial-dense", action="store_true", help="also time the radial op with dense=True")
    p.add_argument("--variants", default=",".join(VARIANTS), help="radial kernel variants to time; default sm80,sm90")
    p.add_argument("--max-sets", type=int, default=3, help="at most this many rotated input sets; default 3")
    p.add_argument("--out", default=None, help="directory for results.json and results.md")
    p.add_argument("--library", default=os.environ.get("RADIAL_OPS_LIBRARY", DEFAULT_LIBRARY))
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny geometries, CPU op, eager Flex, math SDPA")
    p.add_argument("--tiny-compile", action="store_true", help="with --tiny: also torch.compile Flex on the CPU")
    p.add_argument("--list", action="store_true", help="print the cases and a time estimate, run nothing")
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = 3 if args.tiny else 10
    if args.reps < 1 or args.warmup < 0 or args.huge_reps < 1 or args.max_sets < 1:
        p.error("--reps, --huge-reps and --max-sets must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    cases = TINY_CASES if args.tiny else CASES
    if args.cases is None:
        names = list(TINY_CASES) if args.tiny else list(DEFAULT_CASES)
    elif args.cases == "all":
        names = list(cases)
    else:
        names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in cases]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(cases)}")
    global VARIANTS
    VARIANTS = tuple(v.strip() for v in args.variants.split(",") if v.strip())

    if args.list:
        for name in names:
            c = cases[name]
            log(f"{name:<18} {c['label']:<42} n={c['frames'] * c['s']:>7} heads={c['heads']:>3} hdim={c['hdim']}")
        log(f"estimated run time on an H100: ~{estimate_seconds(names, cases, args, {}):.0f} s")
        return 0

    if args.tiny:
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device (use --tiny for the CPU smoke test)")
        device = torch.device("cuda")
    library = load_library(args.library)
    env = environment(device, library)
    for k in ("device", "capability", "torch", "cuda", "cudnn", "date", "commit", "library", "command"):
        log(f"{k:>10}: {env[k]}")

    # which radial variants can be forced (one small call each)
    variants_ok = []
    variant_status = {}
    if device.type == "cuda":
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn((1, 1024, 2, 128), generator=g, device=device, dtype=torch.bfloat16) for _ in range(3))
        for var in VARIANTS:
            try:
                with VariantEnv(var):
                    torch.ops.radial.attention(q, k, v, 4, 256, 1.0, True, 128, False)
                    torch.cuda.synchronize()
                variants_ok.append(var)
                variant_status[var] = "available"
            except RuntimeError as e:
                variant_status[var] = "unavailable: " + (str(e).splitlines()[0] if str(e) else "")
        del q, k, v
    for var, st in variant_status.items():
        log(f"   variant {var}: {st}")
    env["variants"] = variant_status

    t0 = time.perf_counter()
    densities = {}
    for name in names:
        c = cases[name]
        densities[name] = radial_tile_mask(c, 128).float().mean().item()
    log(f"masks built in {time.perf_counter() - t0:.1f} s; densities "
        + ", ".join(f"{k} {v:.4f}" for k, v in densities.items()))
    if device.type == "cuda":
        log(f"estimated run time: ~{estimate_seconds(names, cases, args, densities):.0f} s")

    baseline_name = "cudnn-sdpa" if device.type == "cuda" else "math-sdpa"
    rows = []
    t_run = time.perf_counter()
    for i, name in enumerate(names):
        log(f"\n[{i + 1}/{len(names)}] {name}  (elapsed {time.perf_counter() - t_run:.0f} s)")
        try:
            rows += run_case(name, cases[name], args, device, variants_ok, baseline_name)
        except Exception as e:  # noqa: BLE001 - one failing case must not lose the others
            c = cases[name]
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            log(f"    case {name} FAILED: {msg}")
            rows.append({"case": name, "label": c["label"], "n": c["frames"] * c["s"], "heads": c["heads"],
                         "hdim": c["hdim"], "batch": 1, "density": densities.get(name, float("nan")),
                         "method": "(case)", "error": msg})
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    env["run_seconds"] = time.perf_counter() - t_run

    log(f"\nradial attention forward, {'bf16' if device.type == 'cuda' else 'fp32 (CPU smoke test)'}, batch 1; {env['device']}; torch {env['torch']}; commit {env['commit']}; "
        f"{env['date']}; x cuDNN vs {baseline_name}")
    log(text_table(rows))
    wrong = [r for r in rows if r.get("wrong")]
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "results.json", "w") as fh:
            json.dump({"environment": env, "rows": rows}, fh, indent=1, default=str)
        (out_dir / "results.md").write_text(markdown(env, rows, baseline_name))
        log(f"wrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")
    log(f"total {env['run_seconds']:.0f} s")
    if wrong:
        log(f"VERIFICATION FAILED for: {', '.join(r['case'] + ' ' + r['method'] for r in wrong)}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
