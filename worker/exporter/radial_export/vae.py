"""The decoder half of Wan2.1's causal 3-D VAE (diffusers' AutoencoderKLWan), scriptable.

Names follow AutoencoderKLWan (`post_quant_conv`, `decoder.conv_in`, `decoder.mid_block.{resnets,
attentions}`, `decoder.up_blocks.N.{resnets,upsamplers.0.{resample.1,time_conv}}`,
`decoder.norm_out.gamma`, `decoder.conv_out`), so the decoder entries of a checkpoint's state dict
load directly (the encoder and quant_conv entries are not used here).

Decoding follows diffusers: the first latent frame is decoded alone and gives one video frame, each
later latent frame gives four, and every temporal convolution sees the frames before it through a
cache (the last kernel_t - 1 inputs of each causal convolution). Here the caches are a list of
tensors, one slot per causal convolution (each knows its slot), instead of diffusers' positional
feat_cache/feat_idx. Chunking the latent frames differently gives the same result to float rounding:
a causal convolution over cache + chunk equals the convolution over the whole clip. The exception,
kept from diffusers, is the temporal upsampler: it passes the first chunk (one latent frame) through
without its time convolution and treats the frames before the second chunk as zeros; hence the first
chunk must be exactly one latent frame.

The cache list is the state of an incremental decode, and the scripted module exports it:
  state = vae.init_state(latents)                      # num_cache_slots empty tensors
  video, state = vae.decode_chunk(latents[:, :, :1], state)   # first call: 1 frame -> 1 frame
  video, state = vae.decode_chunk(latents[:, :, 1:3], state)  # then f frames -> temporal_factor*f
forward(latents) is exactly this loop with chunks 1, then decode_chunk_frames at a time, so a caller
that chunks the same way (the manifest's vae.decode_chunk_frames) gets forward's video bit for bit.
decode_chunk does not change the list it is given; the state it returns holds tensors of the
chunk's batch, height, width, dtype and device, and only a chunk of those may follow it. (With
TorchScript's TensorExpr fuser on, as the worker runs on CUDA, a method's first call for new shapes
runs unfused and may round differently from its later, fused calls; forward's too.)
"""

from dataclasses import dataclass, field
from typing import Final, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class VAEConfig:
    base_dim: int = 96
    z_dim: int = 16
    dim_mult: Tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: Tuple[bool, ...] = (False, True, True)
    latents_mean: Tuple[float, ...] = field(default_factory=tuple)
    latents_std: Tuple[float, ...] = field(default_factory=tuple)
    # Latent frames decoded per call of the decoder after the first one; 1 is diffusers' order and
    # bounds memory at real sizes, more trades memory for fewer, larger convolutions.
    decode_chunk_frames: int = 1

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(1 for flag in self.temperal_downsample if flag)

    @property
    def spatial_factor(self) -> int:
        return 2 ** len(self.temperal_downsample)


class WanCausalConv3d(nn.Conv3d):
    """Conv3d padded only on the past side in time. With `caches`, the frames before x come from
    caches[cache_slot] (empty tensor: none yet, i.e. zeros) and the slot is updated to the last
    kernel_t - 1 frames of its input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, padding=0, stride=1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        pad_t, pad_h, pad_w = self.padding
        self.time_pad = 2 * pad_t
        self.causal_padding = [pad_w, pad_w, pad_h, pad_h, 2 * pad_t, 0]
        self.padding = (0, 0, 0)
        self.cache_slot = -1  # assigned by AutoencoderKLWanDecoder when time_pad > 0

    def forward(self, x: Tensor, caches: Optional[List[Tensor]] = None) -> Tensor:
        padding = list(self.causal_padding)
        if caches is not None and self.time_pad > 0:
            cache = caches[self.cache_slot]
            if cache.numel() > 0:
                x = torch.cat([cache, x], dim=2)
                padding[4] = self.time_pad - cache.size(2)
            caches[self.cache_slot] = x[:, :, -self.time_pad:].clone()
        x = F.pad(x, padding)
        return F.conv3d(x, self.weight, self.bias, self.stride, [0, 0, 0], self.dilation, self.groups)


class WanRMS_norm(nn.Module):
    """x / ||x|| * sqrt(dim) * gamma over the channel dimension (dim 1)."""

    def __init__(self, dim: int, images: bool = True):
        super().__init__()
        shape = (dim, 1, 1) if images else (dim, 1, 1, 1)
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(shape))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class WanUpsample(nn.Module):
    """2x nearest upsampling of [N, C, H, W] (nearest-exact, computed in float32)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x.float(), scale_factor=[2.0, 2.0], mode="nearest-exact").type_as(x)


class WanResample(nn.Module):
    """Upsampling of the decoder: 2x in space (per frame), and for mode 'upsample3d' also 2x in time
    through a causal (3, 1, 1) convolution to 2*dim channels whose halves become frame pairs."""

    temporal: Final[bool]

    def __init__(self, dim: int, mode: str, upsample_out_dim: int):
        super().__init__()
        if mode not in ("upsample2d", "upsample3d"):
            raise ValueError(f"resample mode: got {mode!r}, expected 'upsample2d' or 'upsample3d'")
        self.temporal = mode == "upsample3d"
        self.resample = nn.Sequential(WanUpsample(), nn.Conv2d(dim, upsample_out_dim, 3, padding=1))
        if self.temporal:
            self.time_conv = WanCausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        else:
            self.time_conv = nn.Identity()

    def forward(self, x: Tensor, caches: List[Tensor]) -> Tensor:
        batch, channels, frames, height, width = x.shape
        if self.temporal:
            slot = self.time_conv.cache_slot
            if caches[slot].numel() == 0:
                # First chunk: no temporal upsampling; later chunks see zeros before them.
                caches[slot] = torch.zeros([batch, channels, 2, height, width], dtype=x.dtype,
                                           device=x.device)
            else:
                x = self.time_conv(x, caches)
                x = x.reshape(batch, 2, channels, frames, height, width)
                x = torch.stack([x[:, 0], x[:, 1]], dim=3)
                frames = frames * 2
                x = x.reshape(batch, channels, frames, height, width)
        x = x.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        x = self.resample(x)
        x = x.view(batch, frames, x.size(1), x.size(2), x.size(3)).permute(0, 2, 1, 3, 4)
        return x


class WanResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm1 = WanRMS_norm(in_dim, images=False)
        self.conv1 = WanCausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = WanRMS_norm(out_dim, images=False)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = WanCausalConv3d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = WanCausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, caches: List[Tensor]) -> Tensor:
        shortcut = self.conv_shortcut(x)
        x = self.conv1(F.silu(self.norm1(x)), caches)
        x = self.conv2(self.dropout(F.silu(self.norm2(x))), caches)
        return x + shortcut


class WanAttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = WanRMS_norm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        batch, channels, frames, height, width = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        qkv = self.to_qkv(self.norm(x))
        qkv = qkv.reshape(batch * frames, 1, channels * 3, -1).permute(0, 1, 3, 2).contiguous()
        q, k, v = qkv.chunk(3, dim=-1)
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.squeeze(1).permute(0, 2, 1).reshape(batch * frames, channels, height, width)
        x = self.proj(x)
        x = x.view(batch, frames, channels, height, width).permute(0, 2, 1, 3, 4)
        return x + identity


class WanMidBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.attentions = nn.ModuleList([WanAttentionBlock(dim)])
        self.resnets = nn.ModuleList([WanResidualBlock(dim, dim), WanResidualBlock(dim, dim)])

    def forward(self, x: Tensor, caches: List[Tensor]) -> Tensor:
        x = self.resnets[0](x, caches)
        x = self.attentions[0](x)
        return self.resnets[1](x, caches)


class WanUpBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, upsample_mode: Optional[str]):
        super().__init__()
        resnets = []
        for _ in range(num_res_blocks + 1):
            resnets.append(WanResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = nn.ModuleList(
            [WanResample(out_dim, upsample_mode, out_dim // 2)] if upsample_mode is not None else [])

    def forward(self, x: Tensor, caches: List[Tensor]) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x, caches)
        for upsampler in self.upsamplers:
            x = upsampler(x, caches)
        return x


class WanDecoder3d(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        dim, dim_mult = config.base_dim, list(config.dim_mult)
        temperal_upsample = list(config.temperal_downsample)[::-1]
        dims = [dim * u for u in [dim_mult[-1]] + dim_mult[::-1]]
        self.conv_in = WanCausalConv3d(config.z_dim, dims[0], 3, padding=1)
        self.mid_block = WanMidBlock(dims[0])
        up_blocks = []
        out_dim = dims[0]
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim = in_dim // 2  # the previous upsampler halved the channels
            mode = None
            if i != len(dim_mult) - 1:
                mode = "upsample3d" if temperal_upsample[i] else "upsample2d"
            up_blocks.append(WanUpBlock(in_dim, out_dim, config.num_res_blocks, mode))
        self.up_blocks = nn.ModuleList(up_blocks)
        self.norm_out = WanRMS_norm(out_dim, images=False)
        self.conv_out = WanCausalConv3d(out_dim, 3, 3, padding=1)

    def forward(self, x: Tensor, caches: List[Tensor]) -> Tensor:
        x = self.conv_in(x, caches)
        x = self.mid_block(x, caches)
        for up_block in self.up_blocks:
            x = up_block(x, caches)
        return self.conv_out(F.silu(self.norm_out(x)), caches)


def _shape(x: Tensor) -> str:
    """"[1, 16, 2, 8, 8]" both eagerly and scripted (eager str(x.shape) says torch.Size(...))."""
    return str(list(x.shape))


def _dtype_name(dtype: torch.dtype) -> str:
    """The dtype's name; scripted, str(dtype) would print its enum number."""
    if dtype == torch.float32:
        return "float32"
    if dtype == torch.bfloat16:
        return "bfloat16"
    if dtype == torch.float16:
        return "float16"
    if dtype == torch.float64:
        return "float64"
    return "dtype " + str(dtype)


class AutoencoderKLWanDecoder(nn.Module):
    """forward(latents [B, z_dim, F, H, W], normalised as the DiT sees them) -> video
    [B, 3, t*(F-1)+1, s*H, s*W] in [-1, 1], t = temporal factor, s = spatial factor.

    De-normalises with the VAE's latents_mean/latents_std (as Wan's pipeline does before decoding),
    then decodes the first latent frame alone and the rest in chunks of decode_chunk_frames, through
    init_state/decode_chunk (the incremental interface, see the module docstring)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        if len(config.latents_mean) != config.z_dim or len(config.latents_std) != config.z_dim:
            raise ValueError(f"latents_mean/latents_std: got {len(config.latents_mean)}/"
                             f"{len(config.latents_std)} values, expected {config.z_dim} each")
        if config.decode_chunk_frames < 1:
            raise ValueError(f"decode_chunk_frames: got {config.decode_chunk_frames}, "
                             f"expected >= 1")
        self.z_dim = config.z_dim
        self.decode_chunk_frames = config.decode_chunk_frames
        self.post_quant_conv = WanCausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = WanDecoder3d(config)
        self.register_buffer("latents_mean", torch.tensor(config.latents_mean, dtype=torch.float32,
                                                           device="cpu"),
                             persistent=False)
        self.register_buffer("latents_std", torch.tensor(config.latents_std, dtype=torch.float32,
                                                          device="cpu"),
                             persistent=False)
        # Slot 0 is decoder.conv_in's (modules() lists it first); decode_chunk reads "is this the
        # first chunk" and the state's batch and size from it.
        slots = 0
        for module in self.decoder.modules():
            if isinstance(module, WanCausalConv3d) and module.time_pad > 0:
                module.cache_slot = slots
                slots += 1
        if self.decoder.conv_in.cache_slot != 0:
            raise ValueError("decoder.conv_in must hold cache slot 0")
        self.num_cache_slots = slots

    @torch.jit.export
    def init_state(self, latents: Tensor) -> List[Tensor]:
        """The state before the first chunk: num_cache_slots empty tensors of latents' dtype and
        device (only those are read from latents)."""
        state: List[Tensor] = []
        for _ in range(self.num_cache_slots):
            state.append(torch.empty(0, dtype=latents.dtype, device=latents.device))
        return state

    @torch.jit.export
    def decode_chunk(self, latents: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Decodes the next f latent frames [B, z_dim, f, H, W] (normalised, as forward takes them)
        after those `state` has seen. From init_state's state f must be 1 and gives 1 video frame;
        after that f >= 1 frames give temporal_factor * f. Returns (video [B, 3, frames, s*H, s*W]
        clamped to [-1, 1], the state after this chunk); the given list is left unchanged. Raises
        RuntimeError naming the shapes when latents are not [B, z_dim, f >= 1, H, W], the first
        chunk is not one frame, or the state is not this module's (slot count) or was made for
        another batch, size, dtype or device."""
        if latents.dim() != 5 or latents.size(1) != self.z_dim or latents.size(2) < 1:
            raise RuntimeError("decode_chunk: latents: got shape " + _shape(latents)
                               + ", expected [B, " + str(self.z_dim) + ", f >= 1, H, W]")
        if len(state) != self.num_cache_slots:
            raise RuntimeError("decode_chunk: state: got " + str(len(state)) + " tensors, expected "
                               + str(self.num_cache_slots) + " (from init_state or decode_chunk)")
        first = state[0]
        if first.numel() == 0:
            if latents.size(2) != 1:
                raise RuntimeError("decode_chunk: latents: got shape " + _shape(latents)
                                   + ", expected 1 latent frame in the first chunk (shape [B, "
                                   + str(self.z_dim) + ", 1, H, W])")
        elif (first.size(0) != latents.size(0) or first.size(3) != latents.size(3)
              or first.size(4) != latents.size(4)):
            raise RuntimeError("decode_chunk: latents: got shape " + _shape(latents)
                               + ", expected [" + str(first.size(0)) + ", " + str(self.z_dim)
                               + ", f, " + str(first.size(3)) + ", " + str(first.size(4))
                               + "] (batch, height and width of the earlier chunks)")
        if first.dtype != latents.dtype or first.device != latents.device:
            raise RuntimeError("decode_chunk: latents: got " + _dtype_name(latents.dtype) + " on "
                               + str(latents.device) + ", expected the state's "
                               + _dtype_name(first.dtype) + " on " + str(first.device))
        caches = [cache for cache in state]  # the convolutions replace slots in this copy
        mean = self.latents_mean.view(1, -1, 1, 1, 1).to(latents.dtype)
        inv_std = 1.0 / self.latents_std.view(1, -1, 1, 1, 1).to(latents.dtype)
        z = latents / inv_std + mean
        video = self.decoder(self.post_quant_conv(z), caches)
        return torch.clamp(video, min=-1.0, max=1.0), caches

    def forward(self, latents: Tensor) -> Tensor:
        if latents.dim() != 5 or latents.size(1) != self.z_dim or latents.size(2) < 1:
            raise RuntimeError("latents: got shape " + _shape(latents) + ", expected [B, "
                               + str(self.z_dim) + ", F >= 1, H, W]")
        state = self.init_state(latents)
        video, state = self.decode_chunk(latents[:, :, :1], state)
        outputs = [video]
        start = 1
        while start < latents.size(2):
            stop = min(start + self.decode_chunk_frames, latents.size(2))
            video, state = self.decode_chunk(latents[:, :, start:stop], state)
            outputs.append(video)
            start = stop
        return torch.cat(outputs, dim=2)
