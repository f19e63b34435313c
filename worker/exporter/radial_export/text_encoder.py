"""UMT5 encoder (the text encoder of Wan2.1), written to be scripted with torch.jit.script.

Module and parameter names are those of transformers' UMT5EncoderModel (`shared`,
`encoder.embed_tokens`, `encoder.block.N.layer.0.SelfAttention.{q,k,v,o,relative_attention_bias}`,
`encoder.block.N.layer.{0,1}.layer_norm`, `encoder.block.N.layer.1.DenseReluDense.{wi_0,wi_1,wo}`,
`encoder.final_layer_norm`), so a checkpoint's state dict loads directly. As in UMT5 (unlike T5),
every layer has its own relative position bias; attention scores are not scaled by 1/sqrt(d).
The feed-forward is the gated tanh-GELU one (feed_forward_proj "gated-gelu").

forward(input_ids, attention_mask) returns the last hidden state with padded positions set to zero,
which is what Wan's pipeline feeds the transformer.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class TextEncoderConfig:
    vocab_size: int = 256384
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6


class UMT5LayerNorm(nn.Module):
    """Scale-only RMS norm, computed in float32."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: Tensor) -> Tensor:
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype == torch.float16 or self.weight.dtype == torch.bfloat16:
            hidden_states = hidden_states.to(self.weight.dtype)
        return self.weight * hidden_states


def relative_position_bucket(relative_position: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """Bidirectional T5 bucketing: half the buckets per sign; within a sign, exact buckets for small
    distances and log-spaced ones up to max_distance (larger distances share the last bucket)."""
    num_buckets = num_buckets // 2
    buckets = (relative_position > 0).to(torch.long) * num_buckets
    distance = torch.abs(relative_position)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    log_ratio = torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).to(torch.long)
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


def gelu_new(x: Tensor) -> Tensor:
    """The tanh approximation of GELU in the form transformers calls gelu_new."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class UMT5Attention(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.n_heads = config.num_heads
        self.key_value_proj_dim = config.d_kv
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        inner_dim = config.num_heads * config.d_kv
        self.q = nn.Linear(config.d_model, inner_dim, bias=False)
        self.k = nn.Linear(config.d_model, inner_dim, bias=False)
        self.v = nn.Linear(config.d_model, inner_dim, bias=False)
        self.o = nn.Linear(inner_dim, config.d_model, bias=False)
        self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets,
                                                    config.num_heads)

    def position_bias(self, length: int, device: torch.device) -> Tensor:
        positions = torch.arange(length, dtype=torch.long, device=device)
        relative = positions[None, :] - positions[:, None]  # key position - query position
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(self, hidden_states: Tensor, additive_mask: Tensor) -> Tensor:
        batch, length = hidden_states.size(0), hidden_states.size(1)
        q = self.q(hidden_states).view(batch, length, self.n_heads, -1).transpose(1, 2)
        k = self.k(hidden_states).view(batch, length, self.n_heads, -1).transpose(1, 2)
        v = self.v(hidden_states).view(batch, length, self.n_heads, -1).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3))
        scores = scores + self.position_bias(length, hidden_states.device) + additive_mask
        weights = torch.softmax(scores, dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, length, -1)
        return self.o(out)


class UMT5LayerSelfAttention(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.SelfAttention = UMT5Attention(config)
        self.layer_norm = UMT5LayerNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(0.0)

    def forward(self, hidden_states: Tensor, additive_mask: Tensor) -> Tensor:
        attended = self.SelfAttention(self.layer_norm(hidden_states), additive_mask)
        return hidden_states + self.dropout(attended)


class UMT5DenseGatedActDense(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(0.0)

    def forward(self, hidden_states: Tensor) -> Tensor:
        gated = gelu_new(self.wi_0(hidden_states)) * self.wi_1(hidden_states)
        gated = self.dropout(gated)
        return self.wo(gated.to(self.wo.weight.dtype))


class UMT5LayerFF(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.DenseReluDense = UMT5DenseGatedActDense(config)
        self.layer_norm = UMT5LayerNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(0.0)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return hidden_states + self.dropout(self.DenseReluDense(self.layer_norm(hidden_states)))


class UMT5Block(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.layer = nn.ModuleList([UMT5LayerSelfAttention(config), UMT5LayerFF(config)])

    def forward(self, hidden_states: Tensor, additive_mask: Tensor) -> Tensor:
        hidden_states = self.layer[0](hidden_states, additive_mask)
        return self.layer[1](hidden_states)


class UMT5Stack(nn.Module):
    def __init__(self, config: TextEncoderConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.block = nn.ModuleList([UMT5Block(config) for _ in range(config.num_layers)])
        self.final_layer_norm = UMT5LayerNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(0.0)
        # Added to the scores of padded keys (the most negative float32, as transformers does).
        self.mask_value = float(torch.finfo(torch.float32).min)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden_states = self.dropout(self.embed_tokens(input_ids))
        keep = attention_mask[:, None, None, :].to(hidden_states.dtype)
        additive_mask = (1.0 - keep) * self.mask_value
        for layer in self.block:
            hidden_states = layer(hidden_states, additive_mask)
        return self.dropout(self.final_layer_norm(hidden_states))


class UMT5EncoderModel(nn.Module):
    """forward(input_ids [B, L] int64, attention_mask [B, L] int64 (1 = token, 0 = padding))
    -> [B, L, d_model] float32, zero where attention_mask is 0."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.vocab_size = config.vocab_size
        # One table under both names, as UMT5EncoderModel ties encoder.embed_tokens to shared.
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = UMT5Stack(config, self.shared)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise RuntimeError("input_ids/attention_mask: got shapes " + str(input_ids.shape) + " and "
                               + str(attention_mask.shape) + ", expected both [B, L]")
        if input_ids.numel() > 0:
            if int(input_ids.min()) < 0 or int(input_ids.max()) >= self.vocab_size:
                raise RuntimeError("input_ids: got ids outside [0, " + str(self.vocab_size)
                                   + "), expected token ids of the bundle's tokenizer")
        hidden_states = self.encoder(input_ids, attention_mask)
        return hidden_states * attention_mask.unsqueeze(-1).to(hidden_states.dtype)
