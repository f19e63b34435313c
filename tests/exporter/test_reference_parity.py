"""The exporter's modules against the reference implementations they follow, on the tiny bundle's
random weights: diffusers' WanTransformer3DModel and AutoencoderKLWan, transformers'
UMT5EncoderModel. Each reference loads our state dict by name (so a checkpoint's state dict loads into
ours), and the outputs agree in float32 with dense attention.

Skipped where diffusers/transformers are not installed (they are not in requirements.txt yet; checked
with diffusers 0.42.1 and transformers 5.23.0)."""

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "worker" / "exporter"))

from radial_export.bundle import TinyConfig, build_tiny_modules  # noqa: E402
from radial_export.ops import load_radial_ops  # noqa: E402
from conftest import relative_error  # noqa: E402

load_radial_ops()
CONFIG = TinyConfig()


@pytest.fixture(scope="module")
def ours():
    dit, text_encoder, vae = build_tiny_modules(CONFIG, seed=0)
    return {"dit": dit, "text_encoder": text_encoder, "vae": vae}


def assert_relative_close(actual, expected, tolerance=1e-4):
    error = relative_error(actual, expected)
    assert error < tolerance, f"max error relative to max |reference|: {error:.3g}"


def test_dit_matches_diffusers(ours):
    diffusers = pytest.importorskip("diffusers")
    c = CONFIG.dit
    reference = diffusers.WanTransformer3DModel(
        patch_size=c.patch_size, num_attention_heads=c.num_attention_heads,
        attention_head_dim=c.attention_head_dim, in_channels=c.in_channels,
        out_channels=c.out_channels, text_dim=c.text_dim, freq_dim=c.freq_dim, ffn_dim=c.ffn_dim,
        num_layers=c.num_layers, cross_attn_norm=c.cross_attn_norm,
        qk_norm="rms_norm_across_heads", eps=c.eps, rope_max_seq_len=c.rope_max_seq_len).eval()
    reference.load_state_dict(ours["dit"].state_dict(), strict=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 5, 16, 16, generator=gen)
    t = torch.tensor([999.0, 250.0])
    context = torch.randn(2, 64, c.text_dim, generator=gen)
    scripted = torch.jit.script(ours["dit"])
    with torch.no_grad():
        expected = reference(x, t, context, return_dict=False)[0]
        actual = scripted(x, t, context, True, 0, 1.0, True, 64)
    assert_relative_close(actual, expected)


def test_vae_decoder_matches_diffusers(ours):
    diffusers = pytest.importorskip("diffusers")
    c = CONFIG.vae
    reference = diffusers.AutoencoderKLWan(
        base_dim=c.base_dim, z_dim=c.z_dim, dim_mult=list(c.dim_mult),
        num_res_blocks=c.num_res_blocks, attn_scales=[],
        temperal_downsample=list(c.temperal_downsample),
        latents_mean=list(c.latents_mean), latents_std=list(c.latents_std)).eval()
    result = reference.load_state_dict(ours["vae"].state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(("encoder.", "quant_conv.")) for k in result.missing_keys)
    latents = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor(c.latents_mean).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(c.latents_std).view(1, -1, 1, 1, 1)
    scripted = torch.jit.script(ours["vae"])
    with torch.no_grad():
        expected = reference.decode(latents / inv_std + mean, return_dict=False)[0]
        actual = scripted(latents)
    assert actual.shape == expected.shape == (1, 3, 9, 64, 64)
    assert_relative_close(actual, expected)


def test_text_encoder_matches_transformers(ours):
    transformers = pytest.importorskip("transformers")
    c = CONFIG.text_encoder
    config = transformers.UMT5Config(
        vocab_size=c.vocab_size, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff,
        num_layers=c.num_layers, num_heads=c.num_heads,
        relative_attention_num_buckets=c.relative_attention_num_buckets,
        relative_attention_max_distance=c.relative_attention_max_distance,
        feed_forward_proj="gated-gelu", layer_norm_epsilon=c.layer_norm_epsilon, dropout_rate=0.0)
    reference = transformers.UMT5EncoderModel(config).eval()
    reference.load_state_dict(ours["text_encoder"].state_dict(), strict=True)
    ids = torch.randint(3, c.vocab_size, (2, 64), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 64, dtype=torch.long)
    mask[0, 9:] = 0
    ids = ids * mask
    ids[0, 8] = 1
    scripted = torch.jit.script(ours["text_encoder"])
    with torch.no_grad():
        # Wan's pipeline keeps the first sum(mask) positions and zero-pads the rest.
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state * mask[..., None]
        actual = scripted(ids, mask)
    assert_relative_close(actual, expected)
