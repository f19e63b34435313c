"""`radial_export --random`: the published configurations with seeded random weights (for timing at
real sizes). Checked on a small preset injected into PRESETS (the real ones need 11 GiB and more):
the manifest is a --from manifest of the same configs, dtypes follow the --from policy (float32
parts of the DiT), UMT5's tied embedding stays tied, weights are seeded, and the modules run."""

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "worker" / "exporter"))

from radial_export import random_bundle  # noqa: E402
from radial_export.checkpoint import DIT_FLOAT32_PARTS, LIMITS, RADIAL  # noqa: E402
from radial_export.dit import DiTConfig  # noqa: E402
from radial_export.errors import ExportError  # noqa: E402
from radial_export.ops import load_radial_ops  # noqa: E402
from radial_export.text_encoder import TextEncoderConfig  # noqa: E402

load_radial_ops()
SMALL = {"dit": DiTConfig(num_attention_heads=2, attention_head_dim=64, ffn_dim=256, num_layers=2,
                          text_dim=64),
         "text_encoder": TextEncoderConfig(vocab_size=1000, d_model=64, d_kv=32, d_ff=128,
                                           num_layers=2, num_heads=2),
         "shift": 3.0}


@pytest.fixture
def small_preset(monkeypatch):
    monkeypatch.setitem(random_bundle.PRESETS, "small", SMALL)
    return "small"


def test_manifest_dtypes_and_modules(small_preset, tmp_path):
    manifest = random_bundle.export_random(small_preset, tmp_path / "b", dtype="bf16", seed=3)
    on_disk = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["name"] == "small-random" and manifest["dtype"] == "bfloat16"
    assert manifest["weights"] == {"source": "random", "seed": 3, "preset": "small"}
    assert manifest["sampler"] == {"name": "flow_unipc", "num_train_timesteps": 1000, "shift": 3.0,
                                   "solver_order": 2, "steps": 50, "guidance": 5.0}
    assert manifest["limits"] == LIMITS and manifest["radial"] == RADIAL
    assert manifest["tokenizer"]["max_length"] == 512 and manifest["text_encoder"]["vocab_size"] == 1000
    assert (manifest["dit"]["num_layers"], manifest["dit"]["num_heads"]) == (2, 2)

    dit = torch.jit.load(str(tmp_path / "b" / "dit.pt"))
    for name, value in dit.state_dict().items():
        in_float32 = bool(DIT_FLOAT32_PARTS.intersection(name.split(".")))
        assert value.dtype == (torch.float32 if in_float32 else torch.bfloat16), name
        assert value.device.type == "cpu" and torch.isfinite(value.float()).all(), name
    weight = dit.state_dict()["blocks.0.attn1.to_q.weight"].float()
    assert 0.015 < weight.std().item() < 0.025

    text = torch.jit.load(str(tmp_path / "b" / "text_encoder.pt"))
    assert text.shared.weight.data_ptr() == text.encoder.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        out = text(torch.tensor([[5, 6, 7, 1, 0]]), torch.tensor([[1, 1, 1, 1, 0]]))
    assert out.shape == (1, 5, 64) and torch.isfinite(out.float()).all()


def test_seed_decides_the_weights(small_preset, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        random_bundle.export_random(small_preset, tmp_path / name, dtype="fp32", seed=seed)
    weights = {name: torch.jit.load(str(tmp_path / name / "vae_decoder.pt")).state_dict()
               for name in "abc"}
    key = next(k for k, v in weights["a"].items() if v.dim() > 1)
    assert torch.equal(weights["a"][key], weights["b"][key])
    assert not torch.equal(weights["a"][key], weights["c"][key])


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(ExportError, match="--random: got 'wan2.1-t2v-5b', expected one of"):
        random_bundle.export_random("wan2.1-t2v-5b", tmp_path)
