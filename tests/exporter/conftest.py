"""Shared by the tests of `radial_export --from` (test_from_diffusers.py, test_pipeline_parity.py):
a small diffusers WanPipeline with seeded random weights saved as a pipeline directory (the
`reference` fixture), the tolerance helper and the exporter's command line. The fixture is skipped
where diffusers/transformers are not installed (checked with diffusers 0.42.1, transformers 5.23.0)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
EXPORTER = REPO / "worker" / "exporter"
if str(EXPORTER) not in sys.path:
    sys.path.insert(0, str(EXPORTER))

DIT = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64, in_channels=16,
           out_channels=16, text_dim=64, freq_dim=256, ffn_dim=256, num_layers=2,
           cross_attn_norm=True, eps=1e-6, rope_max_seq_len=1024)
TEXT = dict(vocab_size=800, d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2,
            relative_attention_num_buckets=32, relative_attention_max_distance=128,
            feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0)
# Not diffusers' default statistics, so that the manifest test shows they come from the config.
LATENTS_MEAN = [round(-0.4 + 0.05 * i, 4) for i in range(16)]
LATENTS_STD = [round(0.9 + 0.1 * (i % 4), 4) for i in range(16)]
VAE = dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
           temperal_downsample=[False, True, True], latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD)
FLOW_SHIFT = 5.0
MAX_LENGTH = 128  # the fixture tokenizer's model_max_length (below Wan's 512, to keep tests fast)
VOCAB = 700  # SentencePiece pieces; the text encoder's table has 800 rows (UMT5: 256000 / 256384)
TOLERANCE = 1e-4


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def perturb(module, seed):
    """Seeded noise on every parameter, so that a tensor left at its default initialisation (ones,
    zeros) or loaded under the wrong name cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=gen) * 0.05)
    return module.eval()


def run_exporter(*args, check=True):
    env = dict(os.environ, PYTHONPATH=str(EXPORTER))
    env.pop("PYTHONHASHSEED", None)
    result = subprocess.run([sys.executable, "-m", "radial_export", *map(str, args)], env=env,
                            cwd=REPO, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"exporter failed ({result.returncode}):\n{result.stderr}")
    return result


def copy_pipeline(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_json(path: Path, **changes):
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values, indent=2))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The reference modules and the pipeline directory they were saved to."""
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from radial_export.tokenizer import train_sentencepiece
    root = tmp_path_factory.mktemp("reference")
    spiece_dir = root / "spiece"
    spiece_dir.mkdir()
    (spiece_dir / "spiece.model").write_bytes(train_sentencepiece(VOCAB))
    tokenizer = transformers.T5Tokenizer.from_pretrained(str(spiece_dir), extra_ids=100,
                                                         model_max_length=MAX_LENGTH)
    torch.manual_seed(0)
    dit = perturb(diffusers.WanTransformer3DModel(**DIT), 10)
    torch.manual_seed(1)
    text_encoder = perturb(transformers.UMT5EncoderModel(transformers.UMT5Config(**TEXT)), 11)
    torch.manual_seed(2)
    vae = perturb(diffusers.AutoencoderKLWan(**VAE), 12)
    scheduler = diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction",
                                                  use_flow_sigmas=True, flow_shift=FLOW_SHIFT)
    pipeline = diffusers.WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                     scheduler=scheduler, transformer=dit)
    directory = root / "Wan2.1-T2V-small-Diffusers"
    pipeline.save_pretrained(str(directory), safe_serialization=True)
    # The published Wan2.1 repositories ship spiece.model next to tokenizer.json; transformers 5's
    # save_pretrained writes tokenizer.json only.
    shutil.copy(spiece_dir / "spiece.model", directory / "tokenizer" / "spiece.model")
    return SimpleNamespace(dir=directory, dit=dit, text_encoder=text_encoder, vae=vae,
                           tokenizer=tokenizer)


