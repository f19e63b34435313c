"""GPU tests of torch.ops.radial.attention / attention_lse against a float64 reference.

Run (on a machine with a CUDA GPU, after building build/kernels/libradial_ops.so):

    python3 -m pytest -q tests/kernels/test_attention_gpu.py

The library path comes from RADIAL_OPS_LIBRARY (default <repo>/build/kernels/libradial_ops.so).
Without a CUDA device the whole module is skipped; a missing library is a failure, not a skip.

The reference expands the op's own tile mask (torch.ops.radial.block_mask) to a token mask and
runs a masked softmax in float64 on the GPU. Under the diagonal rule of docs/radial-attention.md
every tile row of a radial mask keeps at least one tile, so every query must get a finite output
and lse; the cases marked "formerly empty" are geometries whose frame-pair rule leaves a tile row
empty, which then keeps only its diagonal tile. Accuracy is judged by ||out - ref|| / ||ref||
against an absolute bound per dtype and against the rounding error of torch's own SDPA kernels in
the same dtype (ours may be at most BASELINE_FACTOR times worse than that).

Harness self-check without a GPU: RADIAL_GPU_TEST_ON_CPU=1 runs the reference-comparison tests on
the CPU (only meaningful when the ops have CPU kernels); GPU-only tests skip in that mode.
"""

import math
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

_ON_CPU = os.environ.get("RADIAL_GPU_TEST_ON_CPU", "") == "1"

if not torch.cuda.is_available() and not _ON_CPU:
    pytest.skip("no CUDA device: GPU attention tests skipped", allow_module_level=True)

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

REPO = Path(__file__).resolve().parents[2]
LIBRARY = os.environ.get("RADIAL_OPS_LIBRARY", str(REPO / "build" / "kernels" / "libradial_ops.so"))


def _ops_loaded():
    try:
        return hasattr(torch.ops.radial, "attention") and hasattr(torch.ops.radial, "block_mask")
    except Exception:  # noqa: BLE001 - an unknown namespace may raise other errors
        return False


if not _ops_loaded():
    # A missing library must fail the run (collection error), not skip it.
    if not os.path.exists(LIBRARY):
        raise RuntimeError(f"radial ops library not found at {LIBRARY} (set RADIAL_OPS_LIBRARY)")
    torch.ops.load_library(LIBRARY)
    assert _ops_loaded(), f"{LIBRARY} loaded but torch.ops.radial.attention is not registered"

OPS = torch.ops.radial
ENV_KERNEL = "RADIAL_ATTENTION_KERNEL"

# Relative-norm error bounds against the float64 reference.
REL_TOL = {torch.bfloat16: 1e-2, torch.float16: 3e-3, torch.float32: 1e-5}
# Ours may be at most this many times the error of torch's SDPA (same dtype) vs float64 ...
BASELINE_FACTOR = 2.0
# ... plus this slack, so a baseline that happens to be very exact does not fail us on noise.
BASELINE_SLACK = {torch.bfloat16: 5e-4, torch.float16: 1e-4, torch.float32: 1e-6}
LSE_ABS_TOL = 1e-2
# float64 reference works on at most this many score bytes at once.
REF_SCORE_BYTES = 1 << 30


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _seed_for(*parts):
    """Deterministic but different seed per test instance (fresh inputs for every check)."""
    h = 1469598103934665603
    for ch in repr(parts).encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFF
    return h


def make_qkv(batch, n, heads, hdim, dtype, seed, qscale=1.0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    shape = (batch, n, heads, hdim)
    q = torch.randn(shape, generator=g, device=DEVICE, dtype=torch.float32) * qscale
    k = torch.randn(shape, generator=g, device=DEVICE, dtype=torch.float32)
    v = torch.randn(shape, generator=g, device=DEVICE, dtype=torch.float32)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def tile_mask_for(frames, s, decay, sink, block, dense):
    n = frames * s
    tiles = -(-n // block)
    if dense:
        return torch.ones(tiles, tiles, dtype=torch.bool)
    m = OPS.block_mask(frames, s, decay, sink, block)
    assert m.dtype == torch.bool and tuple(m.shape) == (tiles, tiles), (m.dtype, m.shape)
    return m


def token_mask(tile_mask, n, block, device=DEVICE):
    """Tile mask [T,T] -> token mask [n,n] (keys >= n do not exist, so slicing excludes them)."""
    m = tile_mask.to(device=device, dtype=torch.bool)
    return m.repeat_interleave(block, 0).repeat_interleave(block, 1)[:n, :n].contiguous()


def reference(q, k, v, tmask):
    """float64 masked attention. q,k,v [b,n,h,d]; tmask [n,n] bool (query, key).

    Returns out [b,n,h,d] float64 and lse [b,h,n] float64; rows with no kept key give 0 / -inf.
    """
    b, n, h, d = q.shape
    scale = 1.0 / math.sqrt(d)
    out = torch.empty((b, n, h, d), dtype=torch.float64, device=q.device)
    lse = torch.empty((b, h, n), dtype=torch.float64, device=q.device)
    empty = ~tmask.any(dim=1)  # [n]
    hc = max(1, min(h, REF_SCORE_BYTES // max(1, n * n * 8 * 2)))
    for bi in range(b):
        for h0 in range(0, h, hc):
            h1 = min(h, h0 + hc)
            qh = q[bi, :, h0:h1].transpose(0, 1).to(torch.float64)  # [hc, n, d]
            kh = k[bi, :, h0:h1].transpose(0, 1).to(torch.float64)
            vh = v[bi, :, h0:h1].transpose(0, 1).to(torch.float64)
            s = torch.matmul(qh, kh.transpose(-1, -2)) * scale
            s.masked_fill_(~tmask, float("-inf"))
            l = torch.logsumexp(s, dim=-1)  # -inf on empty rows
            p = torch.exp(s - l.unsqueeze(-1))
            p.masked_fill_(empty.unsqueeze(-1), 0.0)  # exp(nan) rows -> 0
            del s
            o = torch.matmul(p, vh)  # [hc, n, d]
            del p
            out[bi, :, h0:h1] = o.transpose(0, 1)
            lse[bi, h0:h1] = l
    return out, lse, empty


def rel_err(x, ref):
    x = x.to(torch.float64)
    num = torch.linalg.vector_norm(x - ref).item()
    den = torch.linalg.vector_norm(ref).item()
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def sdpa_baseline_err(q, k, v, tmask, empty, ref, dense):
    """Relative error vs float64 of torch SDPA in the same low precision, or None if unavailable.

    Uses the fused kernels (flash / cuDNN / memory-efficient), which like ours accumulate in fp32
    and round P to the input dtype, so their error is the natural yardstick.
    """
    if q.device.type != "cuda":
        return None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # [b,h,n,d] views
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    try:
        with sdpa_kernel(backends):
            if dense:
                o = F.scaled_dot_product_attention(qt, kt, vt)
            else:
                o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=tmask)
    except Exception:  # noqa: BLE001 - no fused kernel for this shape: no baseline
        return None
    o = o.transpose(1, 2)  # [b,n,h,d]
    o = torch.where(empty.view(1, -1, 1, 1), torch.zeros_like(o), o)
    if not torch.isfinite(o).all():
        return None
    return rel_err(o, ref)


_VARIANT_STATUS = {}


def _probe_variant(variant):
    """'ok' or a skip reason. sm90 is skipped off Hopper or where forcing it says unavailable."""
    if variant in _VARIANT_STATUS:
        return _VARIANT_STATUS[variant]
    status = "ok"
    if DEVICE.type != "cuda":
        # CPU self-check mode: the variant env var is irrelevant there; run the matrix once.
        status = "ok" if variant == "sm80" else "kernel variants are CUDA-only"
    elif variant == "sm90" and torch.cuda.get_device_capability() != (9, 0):
        status = f"sm90 variant needs compute capability 9.0, device has {torch.cuda.get_device_capability()}"
    else:
        old = os.environ.get(ENV_KERNEL)
        os.environ[ENV_KERNEL] = variant
        try:
            q, k, v = make_qkv(1, 256, 1, 128, torch.bfloat16, 1)
            OPS.attention(q, k, v, 2, 128, 1.0, True, 128, False)
            torch.cuda.synchronize()
        except RuntimeError as e:
            if variant == "sm90" and "unavailable" in str(e).lower():
                status = f"sm90 variant unavailable: {e}".splitlines()[0]
            else:
                raise
        finally:
            if old is None:
                os.environ.pop(ENV_KERNEL, None)
            else:
                os.environ[ENV_KERNEL] = old
    _VARIANT_STATUS[variant] = status
    return status


@pytest.fixture(params=["sm80", "sm90"])
def variant(request, monkeypatch):
    status = _probe_variant(request.param)
    if status != "ok":
        pytest.skip(status)
    monkeypatch.setenv(ENV_KERNEL, request.param)
    return request.param


def call(name, *args):
    """Calls torch.ops.radial.<name>; a forced variant that reports 'unavailable' for this
    configuration (e.g. a head_dim the Hopper kernel lacks) skips the test instead of failing."""
    try:
        return getattr(OPS, name)(*args)
    except RuntimeError as e:
        forced = os.environ.get(ENV_KERNEL, "auto")
        if forced == "sm90" and "unavailable" in str(e).lower():
            pytest.skip(f"sm90 unavailable for this configuration: {str(e).splitlines()[0]}")
        raise


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# Cases: (id, frames, tokens_per_frame, heads, block, decay, sink, dense, qscale)
# n = frames * tokens_per_frame; batch is 2 everywhere.
# ---------------------------------------------------------------------------------------------
CASES = [
    # s and n multiples of 128
    ("aligned_f6_s256", 6, 256, 3, 128, 1.0, True, False, 1.0),
    ("aligned_b64_d02_nosink", 6, 256, 3, 64, 0.2, False, False, 1.0),
    # s not a multiple of the block but n is (768 = 6 * 128)
    ("s192_n768_h40", 4, 192, 40, 128, 1.0, True, False, 1.0),
    # n not a multiple of the block (1000 = 7*128 + 104), frames straddle tiles
    ("ragged_n1000_d02", 5, 200, 3, 128, 0.2, True, False, 1.0),
    # tiny ragged tail (1030 = 8*128 + 6 = 16*64 + 6), formerly empty: the 6-token last tile row
    # keeps only its diagonal tile
    ("ragged_tail6_b64", 5, 206, 1, 64, 1.0, False, False, 1.0),
    ("ragged_tail6_b128_sink", 5, 206, 2, 128, 0.2, True, False, 1.0),
    # formerly empty: a 14-token last tile row (n = 270), diagonal tile only
    ("short_last_row_f3_s90", 3, 90, 2, 128, 1.0, False, False, 1.0),
    # formerly empty everywhere: frames shorter than B/3 tokens, every row keeps only its diagonal;
    # n = 80 is a single ragged tile at B = 128 (smaller than one TMA box on sm90)
    ("tiny_frames_f5_s16_b64", 5, 16, 2, 64, 1.0, True, False, 1.0),
    ("tiny_frames_f5_s16_b128", 5, 16, 2, 128, 1.0, True, False, 1.0),
    ("tiny_frames_f6_s40_nosink", 6, 40, 3, 128, 0.5, False, False, 1.0),
    # many frames: decimated far pairs; n = 6000 ragged
    ("long_f12_s500_d02", 12, 500, 1, 128, 0.2, True, False, 1.0),
    ("long_f16_s300_b64_nosink", 16, 300, 2, 64, 1.0, False, False, 1.0),
    # peaky softmax (large logits) to exercise running-max rescaling
    ("sharp_f6_s256", 6, 256, 3, 128, 1.0, True, False, 4.0),
    # dense=True through the same kernels
    ("dense_ragged_n1000", 5, 200, 3, 128, 1.0, True, True, 1.0),
    ("dense_b64_n960", 3, 320, 2, 64, 1.0, True, True, 1.0),
    ("dense_aligned_h40", 2, 384, 40, 128, 1.0, True, True, 1.0),
]
CASE_IDS = [c[0] for c in CASES]
# the CPU self-check mode uses fp32, the only dtype of the CPU reference kernel
DTYPES = [torch.float32] if DEVICE.type == "cpu" else [torch.bfloat16, torch.float16]
DTYPE_IDS = [str(d).replace("torch.", "") for d in DTYPES]
HDIMS = [64, 128]
BATCH = 2


def _check_case(case, dtype, hdim, tag):
    name, f, s, h, block, decay, sink, dense, qscale = case
    n = f * s
    q, k, v = make_qkv(BATCH, n, h, hdim, dtype, _seed_for(name, str(dtype), hdim, tag), qscale)
    tmask_tiles = tile_mask_for(f, s, decay, sink, block, dense)
    tmask = token_mask(tmask_tiles, n, block)
    ref, ref_lse, empty = reference(q, k, v, tmask)

    out = call("attention", q, k, v, f, s, decay, sink, block, dense)
    out2, lse = call("attention_lse", q, k, v, f, s, decay, sink, block, dense)
    _sync()

    # shapes / dtypes / devices
    assert out.shape == q.shape and out.dtype == dtype and out.device == q.device
    assert out2.shape == q.shape and out2.dtype == dtype
    assert lse.shape == (BATCH, h, n) and lse.dtype == torch.float32 and lse.device == q.device

    # every query attends something: the diagonal rule leaves no tile row empty
    if not dense:
        assert tmask_tiles.any(dim=1).all(), f"{name}: a tile row of the radial mask keeps nothing"
        assert not empty.any(), f"{name}: query rows with no key"

    # never NaN / inf in the output
    assert torch.isfinite(out).all(), f"{name}: non-finite values in out"
    assert torch.isfinite(out2).all(), f"{name}: non-finite values in attention_lse out"
    assert not torch.isnan(lse).any(), f"{name}: NaN in lse"

    err = rel_err(out, ref)
    err2 = rel_err(out2, ref)
    tol = REL_TOL[dtype]
    base = sdpa_baseline_err(q, k, v, tmask, empty, ref, dense)
    msg = f"{name} {dtype} d={hdim} {tag}: rel err {err:.3e} (lse variant {err2:.3e}), tol {tol:.1e}, sdpa {base}"
    assert err < tol, msg
    assert err2 < tol, msg
    if base is not None:
        assert err <= BASELINE_FACTOR * base + BASELINE_SLACK[dtype], msg
        assert err2 <= BASELINE_FACTOR * base + BASELINE_SLACK[dtype], msg
    # attention and attention_lse compute the same output
    assert rel_err(out, out2.to(torch.float64)) <= 1e-3 or torch.equal(out, out2), msg

    # empty rows (no kept key tile) are exactly zero, lse exactly -inf
    if empty.any():
        assert (out[:, empty] == 0).all(), f"{name}: empty rows not zero"
        assert (out2[:, empty] == 0).all(), f"{name}: empty rows not zero (attention_lse)"
        assert torch.isneginf(lse[:, :, empty]).all(), f"{name}: empty-row lse not -inf"
    full = ~empty
    assert torch.isfinite(lse[:, :, full]).all(), f"{name}: non-finite lse on a non-empty row"
    lse_err = (lse[:, :, full].to(torch.float64) - ref_lse[:, :, full]).abs().max().item() if full.any() else 0.0
    assert lse_err < LSE_ABS_TOL, f"{msg}; lse max abs err {lse_err:.3e}"
    return err, base


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("geom", [(6, 256), (5, 200), (5, 206), (3, 90), (5, 16), (21, 1560), (18, 3840)])
def test_block_mask_shape_and_diagonal(geom, block):
    f, s = geom
    n = f * s
    m = OPS.block_mask(f, s, 0.2, True, block)
    t = -(-n // block)
    assert m.dtype == torch.bool and tuple(m.shape) == (t, t) and m.device.type == "cpu"
    # every diagonal tile is kept (a lit row always lights its diagonal; an unlit row gets it by the
    # diagonal rule), so every tile row keeps a tile
    assert m.diagonal().all(), f"diagonal tiles dropped: {(~m.diagonal()).nonzero().flatten().tolist()}"
    assert m.any(dim=1).all()


def test_block_mask_density_anchor():
    # radial-attention.md: Wan2.1 768x1280x69, decay 0.2, sink on -> 83728 kept tiles of 540^2
    m = OPS.block_mask(18, 3840, 0.2, True, 128)
    assert tuple(m.shape) == (540, 540)
    assert int(m.sum()) == 83728


@pytest.mark.parametrize("hdim", HDIMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_attention_matches_reference(case, dtype, hdim, variant):
    _check_case(case, dtype, hdim, variant)


@pytest.mark.parametrize("case", [CASES[3], CASES[9]], ids=[CASES[3][0], CASES[9][0]])
def test_auto_variant_matches_reference(case, monkeypatch):
    monkeypatch.delenv(ENV_KERNEL, raising=False)
    _check_case(case, DTYPES[0], 128, "auto")
    monkeypatch.setenv(ENV_KERNEL, "auto")
    _check_case(case, DTYPES[-1], 64, "auto-explicit")


# Geometries whose frame-pair rule leaves tile rows empty; under the diagonal rule those rows keep
# exactly their diagonal tile. (frames, tokens_per_frame, decay, sink, block)
FORMERLY_EMPTY = [
    (5, 206, 1.0, False, 64),
    (5, 206, 0.2, True, 128),
    (3, 90, 1.0, False, 128),
    (5, 16, 1.0, True, 128),
    (9, 115, 0.5, True, 64),
]


def _diagonal_only_rows(tile_mask):
    return [a for a in range(tile_mask.shape[0]) if tile_mask[a].sum() == 1 and tile_mask[a, a]]


@pytest.mark.parametrize("geo", FORMERLY_EMPTY, ids=lambda g: "f{}_s{}_d{}_{}_b{}".format(
    g[0], g[1], g[2], "sink" if g[3] else "nosink", g[4]))
def test_formerly_empty_rows_attend_their_diagonal_tile(geo, variant):
    """The rows that keep only their diagonal tile: against the masked float64 reference (through
    _check_case) and, row by row, against plain float64 attention within their own tile."""
    f, s, decay, sink, block = geo
    n = f * s
    tiles = tile_mask_for(f, s, decay, sink, block, False)
    rows = _diagonal_only_rows(tiles)
    assert rows, f"{geo}: no tile row keeps only its diagonal"
    for dtype in DTYPES:
        name = f"formerly_empty_{f}x{s}_b{block}"
        _check_case((name, f, s, 2, block, decay, sink, False, 1.0), dtype, 128, variant)
        q, k, v = make_qkv(BATCH, n, 2, 64, dtype, _seed_for(name, str(dtype), "diagonal"))
        out, lse = call("attention_lse", q, k, v, f, s, decay, sink, block, False)
        _sync()
        for a in rows:
            lo, hi = a * block, min(n, (a + 1) * block)
            tq, tk, tv = (x[:, lo:hi] for x in (q, k, v))
            within = torch.ones(hi - lo, hi - lo, dtype=torch.bool, device=DEVICE)
            ref, ref_lse, _ = reference(tq, tk, tv, within)
            err = rel_err(out[:, lo:hi], ref)
            assert err < REL_TOL[dtype], f"{name} {dtype} tile row {a}: rel err {err:.3e}"
            lse_err = (lse[:, :, lo:hi].to(torch.float64) - ref_lse).abs().max().item()
            assert lse_err < LSE_ABS_TOL, f"{name} {dtype} tile row {a}: lse err {lse_err:.3e}"


def test_poisoned_allocator_output(variant):
    """The op allocates its outputs; fill the allocator's free blocks with NaN first so the
    outputs most likely reuse poisoned memory, then require every element to be written."""
    if DEVICE.type != "cuda":
        pytest.skip("allocator poisoning is CUDA-only")
    # A formerly empty geometry: the last tile row (6 tokens) keeps only its ragged diagonal tile.
    f, s, decay, sink, block = 5, 206, 0.2, True, 128
    n = f * s
    for dtype in DTYPES:
        for hdim in HDIMS:
            h = 3
            q, k, v = make_qkv(BATCH, n, h, hdim, dtype, _seed_for("poison", str(dtype), hdim))
            tmask = token_mask(tile_mask_for(f, s, decay, sink, block, False), n, block)
            ref, ref_lse, empty = reference(q, k, v, tmask)
            for name in ("attention", "attention_lse"):
                _sync()
                # exact-size poisoned blocks (best fit) plus a large one for anything else
                p_out = torch.full((BATCH, n, h, hdim), float("nan"), dtype=dtype, device=DEVICE)
                p_lse = torch.full((BATCH, h, n), float("nan"), dtype=torch.float32, device=DEVICE)
                p_big = torch.full((64 << 20,), float("nan"), dtype=torch.float32, device=DEVICE)
                _sync()
                del p_out, p_lse, p_big
                res = call(name, q, k, v, f, s, decay, sink, block, False)
                _sync()
                out, lse = (res, None) if name == "attention" else res
                assert not torch.isnan(out).any(), f"{name}: NaN in output (unwritten memory?)"
                assert rel_err(out, ref) < REL_TOL[dtype]
                if empty.any():
                    assert (out[:, empty] == 0).all()
                if lse is not None:
                    assert not torch.isnan(lse).any(), "NaN in lse (unwritten memory?)"
                    assert torch.isneginf(lse[:, :, empty]).all()
                    assert torch.isfinite(lse[:, :, ~empty]).all()


def test_repeatable_bitwise(variant):
    """Same inputs twice -> identical bits. A moving result means a race."""
    f, s, decay, sink, block = 12, 500, 0.2, True, 128
    n = f * s
    q, k, v = make_qkv(BATCH, n, 4, 128, DTYPES[0], _seed_for("repeat"))
    a = call("attention", q, k, v, f, s, decay, sink, block, False)
    b = call("attention", q, k, v, f, s, decay, sink, block, False)
    c, lse_c = call("attention_lse", q, k, v, f, s, decay, sink, block, False)
    d, lse_d = call("attention_lse", q, k, v, f, s, decay, sink, block, False)
    _sync()
    assert torch.equal(a, b), f"attention differs between two calls: max {(a.float() - b.float()).abs().max()}"
    assert torch.equal(c, d) and torch.equal(lse_c, lse_d), "attention_lse differs between two calls"


@pytest.mark.parametrize("hdim", HDIMS)
def test_noncontiguous_inputs(variant, hdim):
    f, s, decay, sink, block = 5, 200, 0.2, True, 128
    n, h = f * s, 3
    dtype = DTYPES[0]
    g = torch.Generator(device=DEVICE).manual_seed(_seed_for("noncontig", hdim))
    packed = torch.randn((BATCH, n, 3, h, hdim), generator=g, device=DEVICE).to(dtype)
    q, k, v = packed[:, :, 0], packed[:, :, 1], packed[:, :, 2]
    assert not q.is_contiguous()
    qc, kc, vc = q.contiguous(), k.contiguous(), v.contiguous()
    # also the [b,h,n,d] -> transpose(1,2) layout of SDPA-style code
    qt = qc.transpose(1, 2).contiguous().transpose(1, 2)
    kt = kc.transpose(1, 2).contiguous().transpose(1, 2)
    vt = vc.transpose(1, 2).contiguous().transpose(1, 2)
    # and a batch slice of a larger tensor (non-trivial batch offset)
    big = torch.randn((BATCH + 1, n, h, hdim), generator=g, device=DEVICE).to(dtype)
    big[1:] = qc
    qb = big[1:]

    tmask = token_mask(tile_mask_for(f, s, decay, sink, block, False), n, block)
    ref, ref_lse, _ = reference(qc, kc, vc, tmask)
    o_c = call("attention", qc, kc, vc, f, s, decay, sink, block, False)
    o_p = call("attention", q, k, v, f, s, decay, sink, block, False)
    o_t = call("attention", qt, kt, vt, f, s, decay, sink, block, False)
    o_b = call("attention", qb, kc, vc, f, s, decay, sink, block, False)
    (o_l, lse_p), (_, lse_c) = (
        call("attention_lse", q, k, v, f, s, decay, sink, block, False),
        call("attention_lse", qc, kc, vc, f, s, decay, sink, block, False),
    )
    _sync()
    tol = REL_TOL[dtype]
    for label, o in (("packed", o_p), ("transposed", o_t), ("batch-slice", o_b), ("packed-lse", o_l)):
        assert torch.isfinite(o).all(), label
        e = rel_err(o, ref)
        assert e < tol, f"{label}: rel err {e:.3e}"
        d = rel_err(o, o_c.to(torch.float64))
        assert torch.equal(o, o_c) or d < 1e-3, f"{label}: differs from contiguous by {d:.3e}"
    assert (lse_p - lse_c).abs().max().item() < 1e-3


def test_cuda_graph_capture_and_replay(variant):
    if DEVICE.type != "cuda":
        pytest.skip("CUDA graphs are CUDA-only")
    f, s, decay, sink, block = 5, 200, 0.2, True, 128
    n, h, hdim, dtype = f * s, 3, 128, torch.bfloat16
    q, k, v = make_qkv(BATCH, n, h, hdim, dtype, _seed_for("graph", 0))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up builds the plan (device tile lists) outside capture
        for _ in range(2):
            OPS.attention(q, k, v, f, s, decay, sink, block, False)
            OPS.attention_lse(q, k, v, f, s, decay, sink, block, False)
            OPS.attention(q, k, v, f, s, decay, sink, block, True)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        g_out = OPS.attention(q, k, v, f, s, decay, sink, block, False)
        g_out2, g_lse = OPS.attention_lse(q, k, v, f, s, decay, sink, block, False)
        g_dense = OPS.attention(q, k, v, f, s, decay, sink, block, True)
    torch.cuda.synchronize()

    tmask = token_mask(tile_mask_for(f, s, decay, sink, block, False), n, block)
    dmask = torch.ones(n, n, dtype=torch.bool, device=DEVICE)
    for rep in range(2):
        nq, nk, nv = make_qkv(BATCH, n, h, hdim, dtype, _seed_for("graph", rep + 1))
        q.copy_(nq)
        k.copy_(nk)
        v.copy_(nv)
        graph.replay()
        torch.cuda.synchronize()
        e_out = OPS.attention(q, k, v, f, s, decay, sink, block, False)
        e_out2, e_lse = OPS.attention_lse(q, k, v, f, s, decay, sink, block, False)
        e_dense = OPS.attention(q, k, v, f, s, decay, sink, block, True)
        torch.cuda.synchronize()
        assert torch.equal(g_out, e_out), f"replay {rep}: graph output != eager"
        assert torch.equal(g_out2, e_out2) and torch.equal(g_lse, e_lse), f"replay {rep}: lse graph != eager"
        assert torch.equal(g_dense, e_dense), f"replay {rep}: dense graph != eager"
        ref, _, _ = reference(q, k, v, tmask)
        assert rel_err(g_out, ref) < REL_TOL[dtype]
        ref_d, _, _ = reference(q, k, v, dmask)
        assert rel_err(g_dense, ref_d) < REL_TOL[dtype]


def _expect_error(fn, patterns):
    with pytest.raises(RuntimeError) as info:
        fn()
    msg = str(info.value)
    assert any(re.search(p, msg) for p in patterns), f"error message names no field ({patterns}): {msg}"


def test_bad_arguments():
    if DEVICE.type != "cuda":
        pytest.skip("CUDA argument checks")
    f, s = 2, 128
    n = f * s
    q, k, v = make_qkv(1, n, 2, 128, torch.bfloat16, 7)
    # fp32 inputs
    _expect_error(
        lambda: OPS.attention(q.float(), k.float(), v.float(), f, s, 1.0, True, 128, False),
        [r"\bq\b", r"dtype", r"[Ff]loat"],
    )
    # mixed bf16 / fp16
    _expect_error(lambda: OPS.attention(q, k.half(), v, f, s, 1.0, True, 128, False), [r"\bk\b", r"dtype", r"Half", r"same"])
    # head_dim 96
    q96, k96, v96 = make_qkv(1, n, 2, 96, torch.bfloat16, 8)
    _expect_error(lambda: OPS.attention(q96, k96, v96, f, s, 1.0, True, 128, False), [r"head_dim", r"96"])
    _expect_error(lambda: OPS.attention_lse(q96, k96, v96, f, s, 1.0, True, 128, False), [r"head_dim", r"96"])
    # mixed devices
    _expect_error(lambda: OPS.attention(q, k.cpu(), v, f, s, 1.0, True, 128, False), [r"device", r"\bk\b"])
    _expect_error(lambda: OPS.attention(q, k, v.cpu(), f, s, 1.0, True, 128, False), [r"device", r"\bv\b"])
    # k / v shape differs from q
    k_short = k[:, : n - 1]
    _expect_error(lambda: OPS.attention(q, k_short, v, f, s, 1.0, True, 128, False), [r"\bk\b", r"shape", r"token"])
    # token count != frames * tokens_per_frame
    _expect_error(lambda: OPS.attention(q, k, v, f + 1, s, 1.0, True, 128, False), [r"token", r"frame"])
    # block other than 64 / 128
    _expect_error(lambda: OPS.attention(q, k, v, f, s, 1.0, True, 96, False), [r"block"])
