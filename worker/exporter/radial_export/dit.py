"""The Wan2.1 diffusion transformer (text-to-video), written to be scripted with torch.jit.script.

Parameter and module names are those of diffusers' WanTransformer3DModel (diffusers 0.42) so that a
diffusers checkpoint's state dict loads with load_state_dict(strict=True): `patch_embedding`,
`condition_embedder.{time_embedder,time_proj,text_embedder}`, `blocks.N.{norm2,attn1,attn2,ffn,
scale_shift_table}`, `proj_out`, `scale_shift_table`. Only the T2V path is built (no image embedder,
no added KV projections, no per-token timesteps of Wan2.2).

The difference from diffusers is the self-attention call: it goes through torch.ops.radial.attention
(frame-major tokens, so `frames = F / p_t` and `tokens_per_frame = (H / p_h) * (W / p_w)`), which in
dense mode is ordinary full attention. Cross-attention to the text is plain SDPA without a mask, as in
Wan: padded text positions are zero vectors and take part in the softmax.
"""

import math
from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class DiTConfig:
    """The subset of WanTransformer3DModel's config that the T2V model uses."""
    patch_size: Tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = 12
    attention_head_dim: int = 128
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    ffn_dim: int = 8960
    num_layers: int = 30
    cross_attn_norm: bool = True
    eps: float = 1e-6
    rope_max_seq_len: int = 1024

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


def rope_split(head_dim: int) -> Tuple[int, int, int]:
    """Channels of each head given to the frame, height and width rotations (Wan's split)."""
    h_dim = 2 * (head_dim // 6)
    return head_dim - 2 * h_dim, h_dim, h_dim


def rope_table(dim: int, positions: int, theta: float) -> Tuple[Tensor, Tensor]:
    """cos and sin of position * frequency for one axis, each frequency repeated for the two channels
    of its rotation pair: [positions, dim]. Computed in float64 on the CPU (also when the module is
    built on the meta device: the tables are never loaded from a checkpoint), returned as float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device="cpu") / dim))
    angles = torch.outer(torch.arange(positions, dtype=torch.float64, device="cpu"), inv_freq)
    cos = angles.cos().repeat_interleave(2, dim=1).float()
    sin = angles.sin().repeat_interleave(2, dim=1).float()
    return cos, sin


class WanRotaryPosEmbed(nn.Module):
    """3-D rotary embedding: per token (f, h, w), the first t_dim channels rotate by f, the next h_dim
    by h, the last w_dim by w. The tables are buffers (not in the state dict), built at construction."""

    def __init__(self, attention_head_dim: int, patch_size: Tuple[int, int, int], max_seq_len: int,
                 theta: float = 10000.0):
        super().__init__()
        self.attention_head_dim = attention_head_dim
        self.patch_t, self.patch_h, self.patch_w = patch_size
        self.max_seq_len = max_seq_len
        self.t_dim, self.h_dim, self.w_dim = rope_split(attention_head_dim)
        tables = [rope_table(d, max_seq_len, theta) for d in (self.t_dim, self.h_dim, self.w_dim)]
        self.register_buffer("freqs_cos", torch.cat([c for c, _ in tables], dim=1), persistent=False)
        self.register_buffer("freqs_sin", torch.cat([s for _, s in tables], dim=1), persistent=False)

    def forward(self, hidden_states: Tensor) -> Tuple[Tensor, Tensor]:
        frames = hidden_states.size(2) // self.patch_t
        height = hidden_states.size(3) // self.patch_h
        width = hidden_states.size(4) // self.patch_w
        if max(frames, max(height, width)) > self.max_seq_len:
            raise RuntimeError("rope positions: got frames/height/width " + str(frames) + "/"
                               + str(height) + "/" + str(width) + ", expected each <= "
                               + str(self.max_seq_len))
        split = [self.t_dim, self.h_dim, self.w_dim]
        cos_t, cos_h, cos_w = self.freqs_cos.split(split, dim=1)
        sin_t, sin_h, sin_w = self.freqs_sin.split(split, dim=1)
        shape = [frames, height, width, -1]
        cos = torch.cat([cos_t[:frames].view(frames, 1, 1, -1).expand(shape),
                         cos_h[:height].view(1, height, 1, -1).expand(shape),
                         cos_w[:width].view(1, 1, width, -1).expand(shape)], dim=-1)
        sin = torch.cat([sin_t[:frames].view(frames, 1, 1, -1).expand(shape),
                         sin_h[:height].view(1, height, 1, -1).expand(shape),
                         sin_w[:width].view(1, 1, width, -1).expand(shape)], dim=-1)
        tokens = frames * height * width
        return cos.reshape(1, tokens, 1, -1), sin.reshape(1, tokens, 1, -1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotates channel pairs (2i, 2i+1) of x [B, S, H, D] by the angles whose cos/sin are given."""
    x_even = x[..., 0::2]
    x_odd = x[..., 1::2]
    c = cos[..., 0::2]
    s = sin[..., 1::2]
    rotated = torch.stack([x_even * c - x_odd * s, x_even * s + x_odd * c], dim=-1)
    return rotated.flatten(-2).type_as(x)


def shard_sizes(tokens: int, world: int) -> List[int]:
    """Tokens of each rank when `tokens` are split in order across `world` ranks: the first
    tokens % world ranks take one more."""
    base = tokens // world
    extra = tokens % world
    return [base + (1 if r < extra else 0) for r in range(world)]


def _all_to_all(send: Tensor, output_sizes: List[int], input_sizes: List[int], group: str) -> Tensor:
    """c10d's functional all-to-all over dim 0 of `send` in the process group registered as `group`
    (by the worker's device group, or torch.distributed in tests): rows [sum(input_sizes[:j]), +
    input_sizes[j]) go to rank j, and rank j's rows land at sum(output_sizes[:j])."""
    received = torch.ops._c10d_functional.all_to_all_single(send, output_sizes, input_sizes, group)
    return torch.ops._c10d_functional.wait_tensor(received)


def tokens_to_heads(x: Tensor, sizes: List[int], group: str) -> Tensor:
    """Ulysses' first all-to-all: x [B, S_rank, G, H, D] (this rank's tokens, all H heads of G
    stacked tensors) -> [B, S, G, H / world, D] (every token, this rank's share of the heads)."""
    world = len(sizes)
    batch, local, stacked, heads, dim = x.shape
    share = heads // world
    send = x.reshape(batch, local, stacked, world, share, dim).permute(3, 1, 0, 2, 4, 5)
    received = _all_to_all(send.reshape(world * local, batch, stacked, share, dim), sizes,
                           [local] * world, group)
    return received.permute(1, 0, 2, 3, 4)


def heads_to_tokens(x: Tensor, sizes: List[int], rank: int, group: str) -> Tensor:
    """Ulysses' second all-to-all, the inverse of tokens_to_heads for one tensor: x [B, S,
    H / world, D] -> [B, S_rank, H, D]."""
    world = len(sizes)
    batch, _, share, dim = x.shape
    local = sizes[rank]
    received = _all_to_all(x.transpose(0, 1).contiguous(), [local] * world, sizes, group)
    return received.reshape(world, local, batch, share, dim).permute(2, 1, 0, 3, 4).reshape(
        batch, local, world * share, dim)


def gather_tokens(x: Tensor, sizes: List[int], group: str) -> Tensor:
    """Every rank's tokens to every rank: x [B, S_rank, C] -> [B, S, C] in token order."""
    world = len(sizes)
    send = x.transpose(0, 1).contiguous()
    received = _all_to_all(torch.cat([send] * world, dim=0), sizes, [send.size(0)] * world, group)
    return received.transpose(0, 1)


class Timesteps(nn.Module):
    """Sinusoidal timestep features, cos half first (flip_sin_to_cos=True, downscale_freq_shift=0)."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.num_channels = num_channels

    def forward(self, timesteps: Tensor) -> Tensor:
        half = self.num_channels // 2
        exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32,
                                                     device=timesteps.device) / half
        angles = timesteps[:, None].float() * torch.exp(exponent)[None, :]
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, time_embed_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, sample: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(sample)))


class TextProjection(nn.Module):
    """Two linears with a tanh-GELU between (diffusers' PixArtAlphaTextProjection, act gelu_tanh)."""

    def __init__(self, in_features: int, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden_size)
        self.act_1 = nn.GELU(approximate="tanh")
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, caption: Tensor) -> Tensor:
        return self.linear_2(self.act_1(self.linear_1(caption)))


class WanTimeTextImageEmbedding(nn.Module):
    def __init__(self, dim: int, time_freq_dim: int, time_proj_dim: int, text_embed_dim: int):
        super().__init__()
        self.timesteps_proj = Timesteps(time_freq_dim)
        self.time_embedder = TimestepEmbedding(time_freq_dim, dim)
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, time_proj_dim)
        self.text_embedder = TextProjection(text_embed_dim, dim)

    def forward(self, timestep: Tensor, encoder_hidden_states: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        features = self.timesteps_proj(timestep)
        temb = self.time_embedder(features.to(self.time_embedder.linear_1.weight.dtype))
        temb = temb.type_as(encoder_hidden_states)
        timestep_proj = self.time_proj(self.act_fn(temb))
        context = self.text_embedder(encoder_hidden_states)
        return temb, timestep_proj, context


class WanAttention(nn.Module):
    """Multi-head attention with RMSNorm over all heads' query and key channels (Wan's QK norm).
    `self_attention` (attn1) runs the radial op with RoPE; `cross_attention` (attn2) runs SDPA."""

    def __init__(self, dim: int, heads: int, dim_head: int, eps: float):
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner_dim)
        self.to_k = nn.Linear(dim, inner_dim)
        self.to_v = nn.Linear(dim, inner_dim)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, dim), nn.Dropout(0.0)])
        self.norm_q = nn.RMSNorm(inner_dim, eps=eps, elementwise_affine=True)
        self.norm_k = nn.RMSNorm(inner_dim, eps=eps, elementwise_affine=True)

    def _project_out(self, attended: Tensor, like: Tensor) -> Tensor:
        out = attended.flatten(2, 3).type_as(like)
        for layer in self.to_out:
            out = layer(out)
        return out

    def self_attention(self, x: Tensor, rope_cos: Tensor, rope_sin: Tensor, frames: int,
                       tokens_per_frame: int, dense: bool, decay: float, sink: bool,
                       block: int, sizes: List[int], rank: int, group: str) -> Tensor:
        """x holds this rank's tokens (all of them when len(sizes) == 1); with several ranks
        (Ulysses sequence parallelism) q, k and v are exchanged so that the op sees every token of
        this rank's share of the heads, and its output is exchanged back to this rank's tokens."""
        q = self.norm_q(self.to_q(x)).unflatten(2, [self.heads, -1])
        k = self.norm_k(self.to_k(x)).unflatten(2, [self.heads, -1])
        v = self.to_v(x).unflatten(2, [self.heads, -1])
        q = apply_rotary(q, rope_cos, rope_sin)
        k = apply_rotary(k, rope_cos, rope_sin)
        if len(sizes) > 1:
            qkv = tokens_to_heads(torch.stack([q, k, v], dim=2), sizes, group)
            q_all = qkv[:, :, 0].contiguous()
            k_all = qkv[:, :, 1].contiguous()
            v_all = qkv[:, :, 2].contiguous()
            attended = torch.ops.radial.attention(q_all, k_all, v_all, frames, tokens_per_frame,
                                                  decay, sink, block, dense)
            return self._project_out(heads_to_tokens(attended, sizes, rank, group), q)
        # [B, S, H, D] is the op's layout; q and k are fresh tensors, v a view with contiguous D.
        attended = torch.ops.radial.attention(q, k, v, frames, tokens_per_frame, decay, sink, block,
                                              dense)
        return self._project_out(attended, q)

    def cross_attention(self, x: Tensor, context: Tensor) -> Tensor:
        q = self.norm_q(self.to_q(x)).unflatten(2, [self.heads, -1])
        k = self.norm_k(self.to_k(context)).unflatten(2, [self.heads, -1])
        v = self.to_v(context).unflatten(2, [self.heads, -1])
        attended = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                  v.transpose(1, 2))
        return self._project_out(attended.transpose(1, 2), q)


class GeluTanhProjection(nn.Module):
    """Linear then tanh-GELU (diffusers' GELU activation module with approximate='tanh')."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.net = nn.ModuleList([GeluTanhProjection(dim, inner_dim), nn.Dropout(0.0),
                                  nn.Linear(inner_dim, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the parameters' dtype (diffusers' FP32LayerNorm): in a
    bf16 model the affine weights are bf16 while the input is upcast."""

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)


class WanTransformerBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_heads: int, cross_attn_norm: bool, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(dim, num_heads, dim // num_heads, eps)
        self.attn2 = WanAttention(dim, num_heads, dim // num_heads, eps)
        self.norm2 = (FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm
                      else nn.Identity())
        self.ffn = FeedForward(dim, ffn_dim)
        self.norm3 = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def forward(self, x: Tensor, context: Tensor, timestep_proj: Tensor, rope_cos: Tensor,
                rope_sin: Tensor, frames: int, tokens_per_frame: int, dense: bool, decay: float,
                sink: bool, block: int, sizes: List[int], rank: int, group: str) -> Tensor:
        modulation = (self.scale_shift_table + timestep_proj.float()).chunk(6, dim=1)
        shift_msa, scale_msa, gate_msa = modulation[0], modulation[1], modulation[2]
        c_shift_msa, c_scale_msa, c_gate_msa = modulation[3], modulation[4], modulation[5]

        normed = (self.norm1(x.float()) * (1 + scale_msa) + shift_msa).type_as(x)
        attended = self.attn1.self_attention(normed, rope_cos, rope_sin, frames, tokens_per_frame,
                                             dense, decay, sink, block, sizes, rank, group)
        x = (x.float() + attended * gate_msa).type_as(x)

        normed = self.norm2(x.float()).type_as(x)
        x = x + self.attn2.cross_attention(normed, context)

        normed = (self.norm3(x.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(x)
        x = (x.float() + self.ffn(normed).float() * c_gate_msa).type_as(x)
        return x


class WanTransformer3DModel(nn.Module):
    """forward(hidden_states [B, C_in, F, H, W], timestep [B] in 0..1000, encoder_hidden_states
    [B, L, text_dim], dense, dense_layers, decay, sink, block) -> velocity [B, C_out, F, H, W].

    Self-attention of block i is dense when `dense` or `i < dense_layers`, radial otherwise with the
    given decay, sink and tile size `block`."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        inner_dim = config.inner_dim
        self.patch_t, self.patch_h, self.patch_w = config.patch_size
        self.in_channels = config.in_channels
        self.out_channels = config.out_channels
        self.num_heads = config.num_attention_heads
        self.rope = WanRotaryPosEmbed(config.attention_head_dim, config.patch_size,
                                      config.rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(config.in_channels, inner_dim,
                                         kernel_size=config.patch_size, stride=config.patch_size)
        self.condition_embedder = WanTimeTextImageEmbedding(inner_dim, config.freq_dim,
                                                            inner_dim * 6, config.text_dim)
        self.blocks = nn.ModuleList([
            WanTransformerBlock(inner_dim, config.ffn_dim, config.num_attention_heads,
                                config.cross_attn_norm, config.eps)
            for _ in range(config.num_layers)])
        self.norm_out = nn.LayerNorm(inner_dim, config.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(inner_dim, config.out_channels * math.prod(config.patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner_dim) / inner_dim ** 0.5)

    def forward(self, hidden_states: Tensor, timestep: Tensor, encoder_hidden_states: Tensor,
                dense: bool, dense_layers: int, decay: float, sink: bool, block: int) -> Tensor:
        return self.forward_parallel(hidden_states, timestep, encoder_hidden_states, dense,
                                     dense_layers, decay, sink, block, 0, 1, "")

    @torch.jit.export
    def forward_parallel(self, hidden_states: Tensor, timestep: Tensor,
                         encoder_hidden_states: Tensor, dense: bool, dense_layers: int,
                         decay: float, sink: bool, block: int, rank: int, world: int,
                         group: str) -> Tensor:
        """forward() as rank `rank` of `world` ranks of Ulysses sequence parallelism, over the c10d
        process group registered under the name `group`: every rank passes the same inputs, runs
        its share of the tokens (shard_sizes, in order) through the blocks, exchanges q/k/v around
        self-attention (tokens_to_heads, heads_to_tokens), and gets the whole velocity back
        (gather_tokens). The attention heads must divide by `world`. world == 1 is forward()."""
        if hidden_states.dim() != 5 or hidden_states.size(1) != self.in_channels:
            raise RuntimeError("hidden_states: got shape " + str(hidden_states.shape)
                               + ", expected [B, " + str(self.in_channels) + ", F, H, W]")
        batch, _, num_frames, height, width = hidden_states.shape
        if num_frames % self.patch_t != 0 or height % self.patch_h != 0 or width % self.patch_w != 0:
            raise RuntimeError("hidden_states: got F, H, W = " + str(num_frames) + ", " + str(height)
                               + ", " + str(width) + ", expected multiples of the patch size "
                               + str([self.patch_t, self.patch_h, self.patch_w]))
        if timestep.dim() != 1 or timestep.size(0) != batch:
            raise RuntimeError("timestep: got shape " + str(timestep.shape) + ", expected ["
                               + str(batch) + "]")
        if encoder_hidden_states.dim() != 3 or encoder_hidden_states.size(0) != batch:
            raise RuntimeError("encoder_hidden_states: got shape "
                               + str(encoder_hidden_states.shape) + ", expected [" + str(batch)
                               + ", L, text_dim]")
        heads = self.num_heads
        if world < 1 or rank < 0 or rank >= world or heads % world != 0:
            raise RuntimeError("sequence parallelism: got rank " + str(rank) + " of " + str(world)
                               + " ranks, expected 0 <= rank < ranks and ranks dividing the "
                               + str(heads) + " attention heads")
        frames = num_frames // self.patch_t
        rows = height // self.patch_h
        cols = width // self.patch_w
        sizes = shard_sizes(frames * rows * cols, world)
        if world > 1 and sizes[world - 1] == 0:
            raise RuntimeError("sequence parallelism: " + str(frames * rows * cols)
                               + " tokens, expected at least one per rank (" + str(world) + ")")
        start = 0
        for r in range(rank):
            start += sizes[r]
        local = sizes[rank]

        rope_cos, rope_sin = self.rope(hidden_states)
        rope_cos = rope_cos[:, start:start + local]
        rope_sin = rope_sin[:, start:start + local]
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
        x = x[:, start:start + local].contiguous()
        temb, timestep_proj, context = self.condition_embedder(timestep, encoder_hidden_states)
        timestep_proj = timestep_proj.unflatten(1, [6, -1])

        index = 0
        for layer in self.blocks:
            layer_dense = dense or index < dense_layers
            x = layer(x, context, timestep_proj, rope_cos, rope_sin, frames, rows * cols,
                      layer_dense, decay, sink, block, sizes, rank, group)
            index += 1

        shift_scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        shift, scale = shift_scale[0], shift_scale[1]
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x)
        if world > 1:
            x = gather_tokens(x, sizes, group)

        # [B, f*h*w, (pt ph pw C)] -> [B, C, f*pt, h*ph, w*pw]
        x = x.reshape(batch, frames, rows, cols, self.patch_t, self.patch_h, self.patch_w, -1)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)


