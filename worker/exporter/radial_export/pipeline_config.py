"""Reads a diffusers Wan2.1 text-to-video pipeline directory's configs into our modules' configs.

A pipeline directory (what `WanPipeline.save_pretrained` writes and the Wan-AI "-Diffusers" repos
hold) has model_index.json and one folder per component: transformer/config.json,
text_encoder/config.json, vae/config.json, scheduler/scheduler_config.json, tokenizer/. This module
reads those files only (no weights, no tokenizer) and either returns a `PipelineSpec` or raises
`ExportError` naming the file, the key and the value our modules do not implement: image-to-video
and first-last-frame models (image_dim, added_kv_proj_dim, pos_embed_seq_len), Wan2.2's two-expert
pipelines and its residual VAE, T5 variants other than UMT5 with the gated-GELU feed-forward, and
schedulers other than the flow-matching UniPC and Euler ones.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from .dit import DiTConfig
from .errors import ExportError
from .text_encoder import TextEncoderConfig
from .vae import VAEConfig

PIPELINE_CLASS = "WanPipeline"
# Component folder -> the classes model_index.json and the folder's config may name.
COMPONENT_CLASSES = {
    "transformer": ("WanTransformer3DModel",),
    "vae": ("AutoencoderKLWan",),
    "text_encoder": ("UMT5EncoderModel",),
    "scheduler": ("UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"),
}

# WanPipeline's defaults (diffusers 0.42): 50 steps, guidance 5.0.
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 5.0

# Every key of WanTransformer3DModel's config in diffusers 0.42. A key outside this set with a
# non-null value belongs to a model variant this exporter has not seen, so it is refused.
_DIT_KEYS = frozenset({
    "patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
    "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps",
    "image_dim", "added_kv_proj_dim", "rope_max_seq_len", "pos_embed_seq_len"})


@dataclass(frozen=True)
class PipelineSpec:
    """What the configs of one pipeline directory say, in our modules' terms."""
    source: Path
    diffusers_version: str
    dit: DiTConfig
    text_encoder: TextEncoderConfig
    vae: VAEConfig
    sampler: Dict[str, Any]  # the manifest's sampler section

    def folder(self, component: str) -> Path:
        return self.source / component


class _Config:
    """One JSON config file and typed, error-naming access to its keys."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise ExportError(f"{path}: missing (expected a diffusers WanPipeline directory with "
                              "model_index.json and transformer/, text_encoder/, vae/, tokenizer/, "
                              "scheduler/ folders)")
        try:
            self.values = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise ExportError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(self.values, dict):
            raise ExportError(f"{path}: got a JSON {type(self.values).__name__}, expected an object")

    def has(self, key: str) -> bool:
        return self.values.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def unsupported(self, key: str, why: str) -> ExportError:
        return ExportError(f"{self.path}: {key} = {json.dumps(self.values.get(key))} is not "
                           f"supported: {why}")

    def _bad(self, key: str, value: Any, expected: str) -> ExportError:
        return ExportError(f"{self.path}: {key}: got {json.dumps(value)}, expected {expected}")

    def integer(self, key: str, default: Optional[int] = None, minimum: int = 1) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(key, value, f"an integer >= {minimum}")
        return value

    def number(self, key: str, default: Optional[float] = None, positive: bool = True) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (positive and value <= 0):
            raise self._bad(key, value, "a positive number" if positive else "a number")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, value, "true or false")
        return value

    def integers(self, key: str, length: Optional[int] = None, default=None) -> tuple:
        value = self.values.get(key, default)
        if not isinstance(value, list) or not value or (length is not None and len(value) != length) \
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
            count = f"{length} " if length is not None else ""
            raise self._bad(key, value, f"a list of {count}positive integers")
        return tuple(value)

    def numbers(self, key: str, length: int) -> tuple:
        value = self.values.get(key)
        if not isinstance(value, list) or len(value) != length or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise self._bad(key, value, f"a list of {length} numbers")
        return tuple(float(v) for v in value)

    def require_class(self, accepted: Iterable[str], key: str = "_class_name") -> str:
        value = self.values.get(key)
        if value not in accepted:
            raise self.unsupported(key, "expected " + " or ".join(accepted))
        return value

    def require_null(self, key: str, why: str) -> None:
        if self.has(key):
            raise self.unsupported(key, why)

    def require_equal(self, key: str, expected: Any, default: Any, why: str = "") -> None:
        value = self.raw(key, default)
        if value != expected:
            because = f" ({why})" if why else ""
            raise self.unsupported(key, f"expected {json.dumps(expected)}{because}")


def _component_entry(index: _Config, name: str) -> Optional[list]:
    """model_index.json's [library, class] for a component; None when absent or [null, null]."""
    entry = index.values.get(name)
    if entry is None or (isinstance(entry, list) and all(item is None for item in entry)):
        return None
    if not isinstance(entry, list) or len(entry) != 2:
        raise index._bad(name, entry, "[library, class name]")
    return entry


def read_model_index(source: Path) -> _Config:
    index = _Config(source / "model_index.json")
    index.require_class([PIPELINE_CLASS])
    for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        entry = _component_entry(index, name)
        if entry is None:
            raise ExportError(f"{index.path}: {name}: missing, expected a component of a "
                              f"{PIPELINE_CLASS}")
        if name in COMPONENT_CLASSES and entry[1] not in COMPONENT_CLASSES[name]:
            raise index.unsupported(name, "expected the class " + " or ".join(COMPONENT_CLASSES[name]))
    if _component_entry(index, "transformer_2") is not None:
        raise index.unsupported("transformer_2", "a second (low-noise) transformer is Wan2.2's "
                                "two-expert pipeline; only single-transformer Wan2.1 T2V is exported")
    index.require_null("boundary_ratio", "Wan2.2's two-expert switch point")
    index.require_equal("expand_timesteps", False, False, "per-token timesteps are Wan2.2 TI2V")
    return index


def read_dit_config(path: Path) -> DiTConfig:
    c = _Config(path)
    c.require_class(COMPONENT_CLASSES["transformer"])
    c.require_null("image_dim", "an image embedder means an image-to-video (I2V) model; only "
                                "text-to-video is exported")
    c.require_null("added_kv_proj_dim", "added K/V projections for image tokens mean an "
                                        "image-to-video (I2V) model")
    c.require_null("pos_embed_seq_len", "image position embeddings mean a first-last-frame (FLF2V) "
                                        "model")
    c.require_equal("qk_norm", "rms_norm_across_heads", "rms_norm_across_heads",
                    "our attention normalises q and k over all heads")
    for key in sorted(c.values):
        if not key.startswith("_") and key not in _DIT_KEYS and c.has(key):
            raise c.unsupported(key, "not a key of diffusers 0.42's WanTransformer3DModel, so this "
                                     "is a model variant the exporter does not know")
    in_channels = c.integer("in_channels")
    return DiTConfig(
        patch_size=c.integers("patch_size", length=3),
        num_attention_heads=c.integer("num_attention_heads"),
        attention_head_dim=c.integer("attention_head_dim"),
        in_channels=in_channels,
        out_channels=c.integer("out_channels", default=in_channels),  # diffusers: `or in_channels`
        text_dim=c.integer("text_dim"),
        freq_dim=c.integer("freq_dim"),
        ffn_dim=c.integer("ffn_dim"),
        num_layers=c.integer("num_layers"),
        cross_attn_norm=c.flag("cross_attn_norm", True),
        eps=c.number("eps", 1e-6),
        rope_max_seq_len=c.integer("rope_max_seq_len", default=1024))


def read_text_encoder_config(path: Path) -> TextEncoderConfig:
    c = _Config(path)
    if c.has("architectures"):
        architectures = c.raw("architectures")
        if architectures != ["UMT5EncoderModel"]:
            raise c.unsupported("architectures", 'expected ["UMT5EncoderModel"]')
    c.require_equal("model_type", "umt5", None, "T5 and mT5 share one relative position bias; "
                                                "our encoder is UMT5 (a bias per layer)")
    c.require_equal("feed_forward_proj", "gated-gelu", "relu",
                    "our feed-forward is UMT5's gated tanh-GELU")
    c.require_equal("dense_act_fn", "gelu_new", "gelu_new", "implied by feed_forward_proj gated-gelu")
    c.require_equal("is_gated_act", True, True, "implied by feed_forward_proj gated-gelu")
    return TextEncoderConfig(
        vocab_size=c.integer("vocab_size"),
        d_model=c.integer("d_model"),
        d_kv=c.integer("d_kv"),
        d_ff=c.integer("d_ff"),
        num_layers=c.integer("num_layers"),
        num_heads=c.integer("num_heads"),
        relative_attention_num_buckets=c.integer("relative_attention_num_buckets", default=32,
                                                 minimum=2),
        relative_attention_max_distance=c.integer("relative_attention_max_distance", default=128),
        layer_norm_epsilon=c.number("layer_norm_epsilon", 1e-6))


def read_vae_config(path: Path) -> VAEConfig:
    c = _Config(path)
    c.require_class(COMPONENT_CLASSES["vae"])
    c.require_equal("is_residual", False, False, "the residual VAE is Wan2.2's")
    c.require_null("patch_size", "a patchified VAE is Wan2.2's")
    c.require_equal("out_channels", 3, 3, "the decoder writes RGB")
    z_dim = c.integer("z_dim")
    dim_mult = c.integers("dim_mult")
    downsample = c.values.get("temperal_downsample")
    if not isinstance(downsample, list) or len(downsample) != len(dim_mult) - 1 or not all(
            isinstance(flag, bool) for flag in downsample):
        raise c._bad("temperal_downsample", downsample,
                     f"a list of {len(dim_mult) - 1} booleans (one per dim_mult step)")
    latents_std = c.numbers("latents_std", z_dim)
    if min(latents_std) <= 0:
        raise c._bad("latents_std", list(latents_std), "positive numbers")
    config = VAEConfig(
        # The decoder's width; diffusers lets it differ from the encoder's base_dim.
        base_dim=c.integer("decoder_base_dim", default=c.integer("base_dim")),
        z_dim=z_dim,
        dim_mult=dim_mult,
        num_res_blocks=c.integer("num_res_blocks"),
        temperal_downsample=tuple(downsample),
        latents_mean=c.numbers("latents_mean", z_dim),
        latents_std=latents_std,
        decode_chunk_frames=1)
    for key, built in (("scale_factor_temporal", config.temporal_factor),
                       ("scale_factor_spatial", config.spatial_factor)):
        if c.has(key) and c.raw(key) != built:
            raise c.unsupported(key, f"the decoder built from dim_mult and temperal_downsample "
                                     f"scales by {built}")
    return config


def read_scheduler_config(path: Path) -> Dict[str, Any]:
    """The manifest's sampler section. Only the flow-matching configurations whose algorithm the
    worker's two samplers implement are accepted; every key that would change the schedule or the
    update rule away from that is refused by name."""
    c = _Config(path)
    name = c.require_class(COMPONENT_CLASSES["scheduler"])
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                "use_dynamic_shifting"):
        c.require_equal(key, False, False, "the worker's sigmas are the shifted linear flow ones")
    c.require_null("shift_terminal", "the worker does not stretch the schedule's end")
    num_train_timesteps = c.integer("num_train_timesteps", default=1000)
    if name == "UniPCMultistepScheduler":
        c.require_equal("use_flow_sigmas", True, False, "flow_unipc needs flow sigmas")
        c.require_equal("prediction_type", "flow_prediction", "epsilon",
                        "the DiT predicts the flow (velocity)")
        c.require_equal("solver_type", "bh2", "bh2", "flow_unipc implements B(h) = expm1(h)")
        c.require_equal("predict_x0", True, True, "flow_unipc works on data predictions")
        c.require_equal("lower_order_final", True, True, "flow_unipc lowers the order at the end")
        c.require_equal("final_sigmas_type", "zero", "zero", "the last step goes to sigma 0")
        c.require_equal("disable_corrector", [], [], "flow_unipc corrects every step")
        c.require_equal("thresholding", False, False, "no dynamic thresholding")
        c.require_null("solver_p", "no second solver")
        c.require_null("sigma_min", "the flow schedule runs from 1 to 1/num_train_timesteps")
        c.require_null("sigma_max", "the flow schedule runs from 1 to 1/num_train_timesteps")
        return {"name": "flow_unipc", "num_train_timesteps": num_train_timesteps,
                "shift": c.number("flow_shift", 1.0),
                "solver_order": c.integer("solver_order", default=2),
                "steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE}
    c.require_equal("invert_sigmas", False, False, "sigmas run from noise to data")
    c.require_equal("stochastic_sampling", False, False, "the worker's Euler step is deterministic")
    return {"name": "flow_euler", "num_train_timesteps": num_train_timesteps,
            "shift": c.number("shift", 1.0), "steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE}


def read_pipeline(source: Path) -> PipelineSpec:
    """Reads and checks every config of the pipeline directory `source`; raises ExportError on the
    first value our modules cannot represent."""
    source = Path(source).resolve()
    if not source.is_dir():
        raise ExportError(f"--from: got {source}, expected a diffusers pipeline directory")
    index = read_model_index(source)
    dit = read_dit_config(source / "transformer" / "config.json")
    text_encoder = read_text_encoder_config(source / "text_encoder" / "config.json")
    vae = read_vae_config(source / "vae" / "config.json")
    sampler = read_scheduler_config(source / "scheduler" / "scheduler_config.json")
    transformer_path = source / "transformer" / "config.json"
    for key, value in (("in_channels", dit.in_channels), ("out_channels", dit.out_channels)):
        if value != vae.z_dim:
            raise ExportError(
                f"{transformer_path}: {key} = {value} is not supported: expected the VAE's z_dim "
                f"{vae.z_dim} (a text-to-video transformer reads and writes video latents only; "
                "extra channels carry image conditioning)")
    if dit.text_dim != text_encoder.d_model:
        raise ExportError(f"{transformer_path}: text_dim = {dit.text_dim} is not supported: expected "
                          f"the text encoder's d_model {text_encoder.d_model}")
    if dit.attention_head_dim % 2:
        raise ExportError(f"{transformer_path}: attention_head_dim = {dit.attention_head_dim} is not "
                          "supported: rotary embedding needs an even head size")
    return PipelineSpec(source=source, diffusers_version=str(index.raw("_diffusers_version", "")),
                        dit=dit, text_encoder=text_encoder, vae=vae, sampler=sampler)
