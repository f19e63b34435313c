"""CPU tests for the radial Torch ops (torch.ops.radial.block_mask / attention / attention_lse).

The mask is checked against docs/radial-attention.md (published densities and a direct
restatement of the rule, diagonal rule included); attention is checked against a float64
masked-softmax reference built from the op's own tile mask (or from the restated rule), on fresh
random inputs each run. Every random test prints its seed on failure so a failing draw can be
replayed.
"""

import math
import os
import pathlib
import re

import pytest
import torch
import torch.nn.functional as F

_REPO = pathlib.Path(__file__).resolve().parents[2]
torch.ops.load_library(
    os.environ.get("RADIAL_OPS_LIBRARY", str(_REPO / "build" / "kernels" / "libradial_ops.so"))
)
radial = torch.ops.radial

# fp32 kernel vs float64 reference. Outputs are convex combinations of N(0, 1) values, so
# absolute and norm-relative bounds are both meaningful. A plain fp32 PyTorch softmax attention
# lands about 3e-7 (max abs) and 5e-7 (lse) from the reference at these sizes; the bounds leave
# a 20-60x margin so a correct kernel never flakes while a missing or extra key (an error of
# order 1/n ~ 1e-3) always fails.
OUT_MAX_ABS = 2e-5
OUT_REL_NORM = 1e-5
LSE_MAX_ABS = 2e-5


def _generator():
    seed = int.from_bytes(os.urandom(4), "little")
    return torch.Generator().manual_seed(seed), seed


def _randn(shape, gen):
    return torch.randn(shape, generator=gen, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# References


def token_mask(frames, s, decay, sink, block):
    """[n, n] bool from the op's tile mask: query token t attends key token u."""
    n = frames * s
    tiles = radial.block_mask(frames, s, decay, sink, block)
    return tiles.repeat_interleave(block, 0).repeat_interleave(block, 1)[:n, :n]


def reference_attention(q, k, v, mask):
    """float64 masked softmax attention; rows with no attended key give 0 and lse -inf.

    Returns out [b, n, h, d] float64 and lse [b, h, n] float64.
    """
    q64, k64, v64 = q.double(), k.double(), v.double()
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.einsum("bqhd,bkhd->bhqk", q64, k64) * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    finite_lse = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    probs = torch.exp(scores - finite_lse[..., None])  # exp(-inf) = 0 on empty rows
    out = torch.einsum("bhqk,bkhd->bqhd", probs, v64)
    return out, lse


def rule_block_mask(frames, s, decay, sink, block):
    """The rule of docs/radial-attention.md, restated: per frame pair, the s x s token band is
    cut along the global B-grid and each touched tile decided by its column counts; then a tile row
    that no pair lit keeps its diagonal tile."""
    n = frames * s
    tiles = -(-n // block)
    mask = torch.zeros(tiles, tiles, dtype=torch.bool)
    p = 2 ** s.bit_length()
    local = torch.arange(s)
    for i in range(frames):
        for j in range(frames):
            d = abs(i - j)
            if d <= 1 or (sink and j == 0):
                w = s
            else:
                l0 = p / 2 ** d.bit_length()
                if l0 < 128 and d % math.floor(128 / l0) != 0:
                    continue
                length = l0 * decay
                w = math.floor(length) if length >= block else block
            band = (local[:, None] - local[None, :]).abs() <= w
            for a in range(i * s // block, ((i + 1) * s - 1) // block + 1):
                r0, r1 = max(a * block, i * s) - i * s, min((a + 1) * block, (i + 1) * s) - i * s
                for b in range(j * s // block, ((j + 1) * s - 1) // block + 1):
                    c0 = max(b * block, j * s) - j * s
                    c1 = min((b + 1) * block, (j + 1) * s) - j * s
                    counts = band[r0:r1, c0:c1].sum(dim=0)
                    nonzero = int((counts > 0).sum())
                    high = int((3 * counts > block).sum())
                    if nonzero > 0 and 5 * high > 3 * nonzero:
                        mask[a, b] = True
    empty_rows = (~mask.any(dim=1)).nonzero().flatten()
    mask[empty_rows, empty_rows] = True
    return mask


def assert_close_to_reference(out, lse, ref_out, ref_lse, context):
    assert out.dtype == torch.float32 and lse.dtype == torch.float32, context
    err = (out.double() - ref_out).abs()
    max_abs = err.max().item() if err.numel() else 0.0
    norm = ref_out.norm().item()
    rel_norm = (out.double() - ref_out).norm().item() / norm if norm > 0 else 0.0
    assert max_abs <= OUT_MAX_ABS, f"{context}: out max abs err {max_abs:.3g}"
    assert rel_norm <= OUT_REL_NORM, f"{context}: out rel norm err {rel_norm:.3g}"

    empty = torch.isinf(ref_lse)
    assert torch.equal(torch.isneginf(lse), empty), f"{context}: lse -inf rows differ"
    assert not torch.isnan(lse).any(), f"{context}: lse has NaN"
    if (~empty).any():
        lse_err = (lse.double() - ref_lse)[~empty].abs().max().item()
        assert lse_err <= LSE_MAX_ABS, f"{context}: lse max abs err {lse_err:.3g}"
    # Query rows that attend nothing are exactly zero, not NaN.
    empty_rows = empty.permute(0, 2, 1)  # [b, n, h]
    assert torch.all(out[empty_rows] == 0), f"{context}: empty rows not zero"


# ---------------------------------------------------------------------------------------------
# block_mask op


@pytest.mark.parametrize(
    "frames,s,decay,sink,tiles,kept,density",
    [
        (8, 512, 0.5, False, 32, 772, 0.7539),
        (18, 3840, 0.2, True, 540, 83728, 0.2871),
    ],
)
def test_block_mask_matches_published_densities(frames, s, decay, sink, tiles, kept, density):
    mask = radial.block_mask(frames, s, decay, sink, 128)
    assert mask.dtype == torch.bool
    assert mask.device.type == "cpu"
    assert tuple(mask.shape) == (tiles, tiles)
    assert int(mask.sum()) == kept
    assert abs(mask.double().mean().item() - density) < 5e-5


def test_block_mask_defaults():
    explicit = radial.block_mask(6, 256, 1.0, True, 128)
    assert torch.equal(radial.block_mask(6, 256), explicit)
    assert torch.equal(
        radial.block_mask(frames=6, tokens_per_frame=256, decay=1.0, sink=True, block=128), explicit
    )
    # The sink is on by default: every query tile keeps frame 0's two tiles.
    assert explicit[:, :2].all()


@pytest.mark.parametrize(
    "frames,s,decay,sink,block",
    [
        (3, 100, 1.0, False, 64),
        (3, 90, 1.0, False, 128),
        (5, 300, 0.2, True, 128),
        (6, 222, 2.0, False, 64),
        (4, 257, 0.5, True, 64),
        (9, 128, 1.0, False, 128),
        # Tile rows the pair rule leaves empty (they keep their diagonal tile):
        (5, 206, 1.0, False, 64),  # 6-token last tile
        (5, 206, 0.2, True, 128),
        (5, 16, 1.0, True, 64),  # frames shorter than B/3: every row
        (6, 40, 1.0, False, 128),
        (8, 1, 0.5, True, 64),
    ],
)
def test_block_mask_matches_rule(frames, s, decay, sink, block):
    mask = radial.block_mask(frames, s, decay, sink, block)
    assert tuple(mask.shape) == (-(-frames * s // block),) * 2
    assert torch.equal(mask, rule_block_mask(frames, s, decay, sink, block))
    # The diagonal rule: every tile row keeps a tile, and every diagonal tile is kept.
    assert mask.any(dim=1).all()
    assert mask.diagonal().all()


# ---------------------------------------------------------------------------------------------
# attention / attention_lse against the float64 reference

ATTENTION_CASES = [
    # frames, s, decay, sink, block, batch, heads, head_dim
    (4, 128, 1.0, False, 128, 2, 2, 64),  # aligned, decimated pair (0, 3)
    (3, 100, 1.0, False, 64, 1, 3, 32),  # tiles straddle frames, ragged last tile
    (3, 100, 0.5, True, 64, 2, 1, 16),
    (5, 300, 0.2, True, 128, 2, 2, 64),  # n = 1500, not a multiple of B
    (3, 90, 1.0, False, 128, 2, 2, 16),  # last tile row keeps only its diagonal tile
    (8, 256, 0.5, False, 128, 1, 3, 64),  # n = 2048, banded pairs
    (6, 222, 2.0, False, 64, 3, 1, 32),
    (4, 257, 0.5, True, 128, 1, 2, 128),
    (2, 150, 1.0, True, 64, 1, 2, 7),  # odd head_dim
    (3, 70, 1.0, False, 64, 2, 1, 1),  # head_dim 1
    (6, 40, 1.0, True, 128, 1, 2, 16),  # frames too short for any pair: diagonal tiles only
    (5, 206, 1.0, False, 64, 1, 2, 32),  # 6-token last tile: its row keeps only its diagonal
]


def _case_id(case):
    frames, s, decay, sink, block, batch, heads, head_dim = case
    sink_name = "sink" if sink else "nosink"
    return f"f{frames}-s{s}-decay{decay}-{sink_name}-B{block}-b{batch}-h{heads}-d{head_dim}"


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=_case_id)
def test_attention_matches_reference(case):
    frames, s, decay, sink, block, batch, heads, head_dim = case
    gen, seed = _generator()
    n = frames * s
    q, k, v = (_randn((batch, n, heads, head_dim), gen) for _ in range(3))
    originals = [x.clone() for x in (q, k, v)]
    context = f"{_case_id(case)} seed={seed}"

    out, lse = radial.attention_lse(q, k, v, frames, s, decay, sink, block, False)
    assert out.shape == q.shape and out.dtype == q.dtype, context
    assert tuple(lse.shape) == (batch, heads, n), context
    # Every tile row of a radial mask keeps a tile, so every query attends something.
    assert torch.isfinite(lse).all() and torch.isfinite(out).all(), context
    ref_out, ref_lse = reference_attention(q, k, v, token_mask(frames, s, decay, sink, block))
    assert_close_to_reference(out, lse, ref_out, ref_lse, context)

    plain = radial.attention(q, k, v, frames, s, decay, sink, block, False)
    assert plain.shape == q.shape and plain.dtype == q.dtype, context
    torch.testing.assert_close(plain, out, rtol=1e-6, atol=1e-6, msg=lambda m: f"{context}: {m}")

    for before, after in zip(originals, (q, k, v)):
        assert torch.equal(before, after), f"{context}: inputs modified"


def test_attention_default_arguments():
    gen, seed = _generator()
    frames, s = 3, 128
    q, k, v = (_randn((1, frames * s, 2, 32), gen) for _ in range(3))
    explicit = radial.attention(q, k, v, frames, s, 1.0, True, 128, False)
    torch.testing.assert_close(radial.attention(q, k, v, frames, s), explicit, rtol=0, atol=0)
    out, lse = radial.attention_lse(q, k, v, frames=frames, tokens_per_frame=s)
    explicit_out, explicit_lse = radial.attention_lse(q, k, v, frames, s, 1.0, True, 128, False)
    torch.testing.assert_close(out, explicit_out, rtol=0, atol=0, msg=f"seed={seed}")
    torch.testing.assert_close(lse, explicit_lse, rtol=0, atol=0, msg=f"seed={seed}")


@pytest.mark.parametrize(
    "frames,s,block,batch,heads,head_dim",
    [
        (4, 128, 128, 2, 2, 64),
        (3, 100, 64, 1, 3, 32),  # n = 300: ragged last tile, keys beyond n excluded
        (5, 250, 128, 2, 1, 16),
        (2, 333, 64, 1, 2, 128),
    ],
)
def test_dense_matches_sdpa(frames, s, block, batch, heads, head_dim):
    gen, seed = _generator()
    n = frames * s
    q, k, v = (_randn((batch, n, heads, head_dim), gen) for _ in range(3))
    context = f"dense f={frames} s={s} B={block} seed={seed}"

    out, lse = radial.attention_lse(q, k, v, frames, s, 0.2, False, block, True)
    expected = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    ).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=2e-5, msg=lambda m: f"{context}: {m}")

    ref_out, ref_lse = reference_attention(q, k, v, torch.ones(n, n, dtype=torch.bool))
    assert_close_to_reference(out, lse, ref_out, ref_lse, context)

    # dense ignores the mask knobs.
    other = radial.attention(q, k, v, frames, s, 1.0, True, block, True)
    torch.testing.assert_close(other, out, rtol=1e-6, atol=1e-6, msg=lambda m: f"{context}: {m}")


# ---------------------------------------------------------------------------------------------
# Strides: only the last dimension must be contiguous.


def _layouts(batch, n, heads, head_dim, gen):
    """Yields (name, q, k, v) with the same values in several memory layouts."""
    packed = _randn((batch, n, 3, heads, head_dim), gen)
    q, k, v = packed[:, :, 0], packed[:, :, 1], packed[:, :, 2]
    yield "packed qkv", q, k, v

    heads_first = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v)]
    yield "[b,h,n,d] transposed", *heads_first

    wide = [torch.zeros(batch, n, heads + 2, head_dim + 5) for _ in range(3)]
    sliced = []
    for buffer, x in zip(wide, (q, k, v)):
        buffer[:, :, 1 : heads + 1, 3 : head_dim + 3] = x
        sliced.append(buffer[:, :, 1 : heads + 1, 3 : head_dim + 3])
    yield "sliced heads and head_dim offset", *sliced

    if batch > 1:
        # Stride 0 on the batch dimension.
        expanded = [x[:1].expand(batch, -1, -1, -1) for x in (q, k, v)]
        yield "expanded batch", *expanded


@pytest.mark.parametrize(
    "frames,s,decay,sink,block,batch,heads,head_dim",
    [(4, 128, 1.0, True, 128, 2, 2, 64), (3, 100, 0.5, False, 64, 3, 3, 16)],
)
def test_strided_inputs_match_contiguous(frames, s, decay, sink, block, batch, heads, head_dim):
    gen, seed = _generator()
    n = frames * s
    mask = token_mask(frames, s, decay, sink, block)
    for name, q, k, v in _layouts(batch, n, heads, head_dim, gen):
        context = f"{name} f={frames} s={s} seed={seed}"
        assert q.stride(-1) == 1
        out, lse = radial.attention_lse(q, k, v, frames, s, decay, sink, block, False)
        qc, kc, vc = (x.contiguous() for x in (q, k, v))
        out_c, lse_c = radial.attention_lse(qc, kc, vc, frames, s, decay, sink, block, False)
        torch.testing.assert_close(out, out_c, rtol=1e-6, atol=1e-6, msg=lambda m: f"{context}: {m}")
        torch.testing.assert_close(lse, lse_c, rtol=1e-6, atol=1e-6, msg=lambda m: f"{context}: {m}")
        ref_out, ref_lse = reference_attention(qc, kc, vc, mask)
        assert_close_to_reference(out, lse, ref_out, ref_lse, context)


@pytest.mark.parametrize(
    "frames,s,decay,sink,block",
    [
        (3, 90, 1.0, False, 128),  # tokens 256..269: the last tile row
        (5, 206, 0.2, True, 128),  # tokens 1024..1029
        (5, 16, 1.0, True, 64),  # 16-token frames: both tile rows
        (9, 9, 0.5, False, 64),  # 9-token frames, a 17-token last tile
    ],
)
def test_formerly_empty_rows_attend_their_diagonal_tile(frames, s, decay, sink, block):
    """Geometries whose pair rule leaves tile rows empty: those rows attend exactly the keys of their
    own tile (the diagonal rule), and the whole output matches a float64 softmax masked by the
    rule restated in this file, not by the op's own mask."""
    gen, seed = _generator()
    n = frames * s
    context = f"f={frames} s={s} decay={decay} sink={sink} B={block} seed={seed}"
    q, k, v = (_randn((2, n, 2, 16), gen) for _ in range(3))
    out, lse = radial.attention_lse(q, k, v, frames, s, decay, sink, block, False)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all(), context

    tiles = rule_block_mask(frames, s, decay, sink, block)
    mask = tiles.repeat_interleave(block, 0).repeat_interleave(block, 1)[:n, :n]
    ref_out, ref_lse = reference_attention(q, k, v, mask)
    assert not torch.isinf(ref_lse).any(), context
    assert_close_to_reference(out, lse, ref_out, ref_lse, context)

    # The rows that keep only their diagonal: the same as plain attention within their tile.
    diagonal_only = [a for a in range(tiles.shape[0]) if tiles[a].sum() == 1 and tiles[a, a]]
    assert diagonal_only, f"{context}: no tile row keeps only its diagonal"
    for a in diagonal_only:
        lo, hi = a * block, min(n, (a + 1) * block)
        tile = [x[:, lo:hi].transpose(1, 2) for x in (q, k, v)]
        expected = F.scaled_dot_product_attention(*tile).transpose(1, 2)
        torch.testing.assert_close(out[:, lo:hi], expected, rtol=1e-5, atol=2e-5,
                                   msg=lambda m, a=a: f"{context} tile row {a}: {m}")


# ---------------------------------------------------------------------------------------------
# Argument errors: RuntimeError naming the field and what was expected.


def _qkv(batch=1, n=128, heads=2, head_dim=16, dtype=torch.float32):
    return [torch.randn(batch, n, heads, head_dim).to(dtype) for _ in range(3)]


def _args(q, k, v, frames=4, s=32, decay=1.0, sink=True, block=64, dense=False):
    """Positional arguments of attention / attention_lse; valid except for what the caller changes."""
    return (q, k, v, frames, s, decay, sink, block, dense)


def _bad_attention_args():
    q, k, v = _qkv()
    empty = _qkv(n=0)
    strided = [torch.randn(1, 128, 2, 32)[..., ::2] for _ in range(3)]
    shape = "shape|size"
    return [
        ("tokens", "tokens", _args(q, k, v, frames=4, s=33)),
        ("tokens_frames", "tokens", _args(q, k, v, frames=8, s=32)),
        ("frames", "frames", _args(*empty, frames=0, s=32)),
        ("tokens_per_frame", "tokens_per_frame", _args(*empty, frames=4, s=0)),
        ("decay_zero", "decay", _args(q, k, v, decay=0.0)),
        ("decay_negative", "decay", _args(q, k, v, decay=-0.5)),
        ("decay_nan", "decay", _args(q, k, v, decay=float("nan"))),
        ("decay_inf", "decay", _args(q, k, v, decay=float("inf"))),
        ("block_32", "block", _args(q, k, v, block=32)),
        ("block_256", "block", _args(q, k, v, block=256)),
        ("dtype_float64", "dtype", _args(*_qkv(dtype=torch.float64))),
        ("dtype_float16", "dtype", _args(*_qkv(dtype=torch.float16))),
        ("dtype_bfloat16", "dtype", _args(*_qkv(dtype=torch.bfloat16))),
        ("dtype_mixed", "dtype", _args(q, k.double(), v)),
        ("rank_3", "rank|dim", _args(q[0], k[0], v[0])),
        ("rank_5", "rank|dim", _args(q[None], k[None], v[None])),
        ("shape_heads", (shape, r"\bk\b"), _args(q, k[:, :, :1], v)),
        ("shape_head_dim", (shape, r"\bv\b"), _args(q, k, v[..., :8])),
        ("shape_batch", (shape, r"\bk\b"), _args(q, torch.cat([k, k]), v)),
        ("shape_tokens", (shape, r"\bk\b"), _args(q, k[:, :64], v)),
        ("stride_qkv", "stride", _args(*strided, frames=4, s=32)),
        ("stride_k", ("stride", r"\bk\b"), _args(q, strided[1], v)),
        ("stride_v", ("stride", r"\bv\b"), _args(q, k, torch.randn(1, 128, 2, 32)[..., ::2])),
    ]


_BAD_ATTENTION = _bad_attention_args()
_BAD_ATTENTION_IDS = [name for name, _, _ in _BAD_ATTENTION]


def _expect_field_error(call, field_patterns):
    """The call raises RuntimeError whose message matches every pattern and says "expected"."""
    with pytest.raises(RuntimeError) as info:
        call()
    message = str(info.value)
    assert "expected" in message, message
    if isinstance(field_patterns, str):
        field_patterns = (field_patterns,)
    for pattern in field_patterns:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"


@pytest.mark.parametrize("op_name", ["attention", "attention_lse"])
@pytest.mark.parametrize("name,field,args", _BAD_ATTENTION, ids=_BAD_ATTENTION_IDS)
def test_attention_rejects_bad_arguments(op_name, name, field, args):
    op = getattr(radial, op_name)
    _expect_field_error(lambda: op(*args), field)


@pytest.mark.parametrize(
    "args,field",
    [
        ((0, 128), "frames"),
        ((-2, 128), "frames"),
        ((4, 0), "tokens_per_frame"),
        ((4, -7), "tokens_per_frame"),
        ((4, 128, 0.0), "decay"),
        ((4, 128, -1.0), "decay"),
        ((4, 128, float("nan")), "decay"),
        ((4, 128, float("inf")), "decay"),
        ((4, 128, 1.0, True, 32), "block"),
        ((4, 128, 1.0, True, 256), "block"),
        ((1 << 20, 4), "tokens"),
    ],
    ids=[
        "frames_zero", "frames_negative", "tokens_per_frame_zero", "tokens_per_frame_negative",
        "decay_zero", "decay_negative", "decay_nan", "decay_inf", "block_32", "block_256",
        "too_many_tokens",
    ],
)
def test_block_mask_rejects_bad_arguments(args, field):
    _expect_field_error(lambda: radial.block_mask(*args), field)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_attention_rejects_device_mismatch():
    q, k, v = _qkv(head_dim=64)
    _expect_field_error(
        lambda: radial.attention(q.cuda().half(), k.half(), v.cuda().half(), 4, 32, 1.0, True, 64),
        "device",
    )
