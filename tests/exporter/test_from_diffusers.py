"""`radial_export --from`: a diffusers WanPipeline saved at small sizes with seeded random weights is
exported, and the bundle is compared with the diffusers/transformers modules it came from (dense
attention, float32): DiT forward, VAE decode, UMT5 encoder output, each within 1e-4 of the reference
relative to its largest value. Also: the manifest against the configs, the tokenizer test vectors
against transformers' tokenizer, sharded checkpoints and tied embedding names, the bf16 policy, the
errors for broken checkpoints and unsupported configs, and the peak host memory of an export.

CPU only. Skipped where diffusers/transformers are not installed (checked with diffusers 0.42.1 and
transformers 5.23.0). Run from the repository root: python -m pytest tests/exporter."""

import hashlib
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
sys.path.insert(0, str(EXPORTER))

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402  (a diffusers dependency)

from radial_export.checkpoint import (DIT_FLOAT32_PARTS, components, export_checkpoint,  # noqa: E402
                                      load_module)
from radial_export.errors import ExportError  # noqa: E402
from radial_export.ops import load_radial_ops  # noqa: E402
from radial_export.pipeline_config import read_pipeline, read_scheduler_config  # noqa: E402
from radial_export.tokenizer import read_checkpoint_tokenizer  # noqa: E402
from sentencepiece import sentencepiece_model_pb2  # noqa: E402
from radial_export.weights import (BLOCK_BYTES, MAP_WINDOW_BYTES, Checkpoint,  # noqa: E402
                                   expected_tensors)

load_radial_ops()
torch._C._jit_set_texpr_fuser_enabled(False)

from conftest import (DIT, FLOW_SHIFT, LATENTS_MEAN, LATENTS_STD, MAX_LENGTH, TEXT,  # noqa: E402
                      TOLERANCE, VOCAB, copy_pipeline, edit_json, relative_error,
                      run_exporter)


@pytest.fixture(scope="module")
def exported(reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "b"
    result = run_exporter("--from", reference.dir, "--out", out, "--dtype", "fp32")
    return SimpleNamespace(dir=out, stderr=result.stderr,
                           manifest=json.loads((out / "manifest.json").read_text()))


@pytest.fixture(scope="module")
def scripted(exported):
    return {name: torch.jit.load(str(exported.dir / f"{name}.pt"))
            for name in ("dit", "text_encoder", "vae_decoder")}


# ---- the modules against the references ----

@pytest.mark.parametrize("latent,text_length", [((3, 16, 16), MAX_LENGTH), ((2, 8, 12), 7)])
def test_dit_matches_diffusers(scripted, reference, latent, text_length):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn((2, 16) + latent, generator=gen)
    t = torch.tensor([999.0, 312.5])
    context = torch.randn(2, text_length, DIT["text_dim"], generator=gen)
    with torch.no_grad():
        expected = reference.dit(x, t, context, return_dict=False)[0]
        actual = scripted["dit"](x, t, context, True, 0, 1.0, True, 64)
    assert actual.shape == expected.shape
    error = relative_error(actual, expected)
    print(f"DiT {latent}: relative error {error:.2e}")
    assert error < TOLERANCE


def test_text_encoder_matches_transformers(scripted, reference):
    prompts = ["A red fox trots across a snowy field at dawn.", ""]
    batch = reference.tokenizer(prompts, padding="max_length", max_length=MAX_LENGTH,
                                truncation=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        # Wan's pipeline keeps the first sum(mask) positions and zero-pads the rest.
        expected = reference.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = expected * mask[..., None]
        actual = scripted["text_encoder"](ids, mask)
    assert actual.shape == (2, MAX_LENGTH, TEXT["d_model"])
    error = relative_error(actual, expected)
    print(f"text encoder: relative error {error:.2e}")
    assert error < TOLERANCE


def test_vae_decoder_matches_diffusers(scripted, reference):
    latents = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    mean = torch.tensor(LATENTS_MEAN).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(LATENTS_STD).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        # The bundle's decoder takes latents as the DiT sees them and de-normalises them itself,
        # as WanPipeline does before vae.decode.
        expected = reference.vae.decode(latents / inv_std + mean, return_dict=False)[0]
        actual = scripted["vae_decoder"](latents)
    assert actual.shape == expected.shape == (1, 3, 9, 64, 64)
    error = relative_error(actual, expected)
    print(f"VAE decode: relative error {error:.2e}")
    assert error < TOLERANCE


# ---- manifest and tokenizer ----

def test_manifest_matches_the_configs(exported, reference):
    m = exported.manifest
    configs = {name: json.loads((reference.dir / name / "config.json").read_text())
               for name in ("transformer", "text_encoder", "vae")}
    dit, te, vae = configs["transformer"], configs["text_encoder"], configs["vae"]
    assert (m["format_version"], m["architecture"], m["dtype"]) == (1, "wan2.1", "float32")
    assert m["name"] == reference.dir.name
    assert m["weights"]["source"] == str(reference.dir.resolve())
    assert m["dit"] == {
        "file": "dit.pt", "in_channels": dit["in_channels"], "out_channels": dit["out_channels"],
        "patch_size": dit["patch_size"], "num_layers": dit["num_layers"],
        "num_heads": dit["num_attention_heads"], "head_dim": dit["attention_head_dim"],
        "text_dim": dit["text_dim"], "freq_dim": dit["freq_dim"], "ffn_dim": dit["ffn_dim"],
        "eps": dit["eps"], "rope_max_seq_len": dit["rope_max_seq_len"]}
    assert m["text_encoder"] == {
        "file": "text_encoder.pt", "dim": te["d_model"], "max_length": MAX_LENGTH,
        "vocab_size": te["vocab_size"], "num_layers": te["num_layers"], "num_heads": te["num_heads"],
        "d_kv": te["d_kv"], "d_ff": te["d_ff"]}
    assert m["tokenizer"] == {
        "type": "sentencepiece", "file": "tokenizer.model", "pad_id": reference.tokenizer.pad_token_id,
        "eos_id": reference.tokenizer.eos_token_id, "unk_id": reference.tokenizer.unk_token_id,
        "max_length": MAX_LENGTH, "vocab_size": VOCAB, "test_vectors": "tokenizer_test_vectors.json"}
    assert m["vae"] == {
        "file": "vae_decoder.pt", "latent_channels": vae["z_dim"], "temporal_factor": 4,
        "spatial_factor": 8, "base_dim": vae["base_dim"], "latents_mean": vae["latents_mean"],
        "latents_std": vae["latents_std"], "decode_chunk_frames": 1}
    assert m["sampler"] == {"name": "flow_unipc", "num_train_timesteps": 1000, "shift": FLOW_SHIFT,
                            "solver_order": 2, "steps": 50, "guidance": 5.0}
    assert m["limits"] == {
        "width": {"min": 256, "max": 1280, "multiple": 16},
        "height": {"min": 256, "max": 1280, "multiple": 16},
        "frames": {"min": 1, "max": 129, "step": 4},
        "steps": {"min": 1, "max": 100},
        "guidance": {"min": 0.0, "max": 20.0},
        "prompt_max_chars": 2000}
    # Below the 14B model's width: the 1.3B model's 480p defaults.
    assert {k: m["defaults"][k] for k in ("width", "height", "frames", "fps")} == {
        "width": 832, "height": 480, "frames": 81, "fps": 16}
    assert m["defaults"]["negative_prompt"]
    assert m["radial"] == {"decay": 0.2, "sink": True, "block": 128, "dense_layers": 1,
                           "dense_steps": 12, "dense_last_steps": 0}
    for name, entry in m["files"].items():
        assert hashlib.sha256((exported.dir / name).read_bytes()).hexdigest() == entry["sha256"]


def test_flow_euler_scheduler(tmp_path):
    diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_config(str(tmp_path))
    assert read_scheduler_config(tmp_path / "scheduler_config.json") == {
        "name": "flow_euler", "num_train_timesteps": 1000, "shift": 3.0, "steps": 50,
        "guidance": 5.0}


def test_tokenizer_files_and_vectors_equal_transformers(exported, reference):
    # The same pieces, ids and scores as spiece.model (only its byte fallback is off, see below).
    ours, theirs = sentencepiece_model_pb2.ModelProto(), sentencepiece_model_pb2.ModelProto()
    ours.ParseFromString((exported.dir / "tokenizer.model").read_bytes())
    theirs.ParseFromString((reference.dir / "tokenizer" / "spiece.model").read_bytes())
    assert [(p.piece, p.score) for p in ours.pieces] == [(p.piece, p.score) for p in theirs.pieces]
    vectors = json.loads((exported.dir / "tokenizer_test_vectors.json").read_text(encoding="utf-8"))
    assert (vectors["max_length"], vectors["pad_id"], vectors["eos_id"], vectors["unk_id"]) == (
        MAX_LENGTH, 0, 1, 2)
    auto = transformers.AutoTokenizer.from_pretrained(str(reference.dir / "tokenizer"))
    prompts = [case["prompt"] for case in vectors["cases"]]
    assert "" in prompts and "🦊 in the snow" in prompts and "一只猫在窗台上睡觉" in prompts
    for case in vectors["cases"]:
        encoded = auto(case["prompt"], padding="max_length", max_length=MAX_LENGTH, truncation=True)
        assert case["ids"] == encoded["input_ids"], case["prompt"]
        assert case["attention_mask"] == encoded["attention_mask"], case["prompt"]
    empty = next(case for case in vectors["cases"] if case["prompt"] == "")
    assert empty["ids"] == [1] + [0] * (MAX_LENGTH - 1)
    truncated = [case for case in vectors["cases"] if sum(case["attention_mask"]) == MAX_LENGTH]
    assert truncated and all(case["ids"][-1] == 1 for case in truncated)


def test_bundle_tokenizer_follows_transformers_on_unknown_characters(exported):
    # The fixture's SentencePiece model has byte fallback, which transformers' converted tokenizer
    # drops (it gives <unk>), as with UMT5's. The bundle's tokenizer.model has it turned off, so
    # libsentencepiece with the bundle rule gives transformers' ids on every pinned prompt, and the
    # export warns about none.
    assert "warning: tokenizer" not in exported.stderr
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString((exported.dir / "tokenizer.model").read_bytes())
    assert not model.trainer_spec.byte_fallback
    vectors = json.loads((exported.dir / "tokenizer_test_vectors.json").read_text())
    fox = next(case for case in vectors["cases"] if "\U0001F98A" in case["prompt"])
    assert vectors["unk_id"] in fox["ids"]


def test_tokenizer_max_length_defaults_to_wan_512(reference, tmp_path):
    folder = tmp_path / "tokenizer"
    reference.tokenizer.save_pretrained(str(folder))
    edit_json(folder / "tokenizer_config.json", model_max_length=int(1e30))
    shutil.copy(reference.dir / "tokenizer" / "spiece.model", folder / "spiece.model")
    tokenizer = read_checkpoint_tokenizer(folder, TEXT["vocab_size"])
    assert tokenizer.max_length == tokenizer.vectors["max_length"] == 512
    longest = tokenizer.vectors["cases"][-1]
    assert len(longest["ids"]) == 512 and sum(longest["attention_mask"]) == 512
    assert longest["ids"][-1] == tokenizer.eos_id


# ---- checkpoint layouts ----

def test_sharded_transformer_and_renamed_embedding_give_the_same_weights(reference, exported,
                                                                          tmp_path):
    variant = copy_pipeline(reference.dir, tmp_path / "sharded")
    shutil.rmtree(variant / "transformer")
    reference.dit.save_pretrained(str(variant / "transformer"), safe_serialization=True,
                                  max_shard_size="1MB")
    assert len(list((variant / "transformer").glob("*.safetensors"))) > 1
    # UMT5's embedding stored under its tied name only.
    path = variant / "text_encoder" / "model.safetensors"
    tensors = load_file(str(path))
    tensors["encoder.embed_tokens.weight"] = tensors.pop("shared.weight")
    save_file(tensors, str(path))
    out = tmp_path / "bundle"
    export_checkpoint(variant, out, dtype="fp32")
    for name in ("dit", "text_encoder", "vae_decoder"):
        ours = torch.jit.load(str(out / f"{name}.pt")).state_dict()
        first = torch.jit.load(str(exported.dir / f"{name}.pt")).state_dict()
        assert ours.keys() == first.keys()
        for key in ours:
            assert torch.equal(ours[key], first[key]), (name, key)


@pytest.mark.parametrize("names", [["shared.weight"], ["encoder.embed_tokens.weight"],
                                   ["shared.weight", "encoder.embed_tokens.weight"]])
def test_tied_umt5_embedding_under_either_name(reference, tmp_path, names):
    folder = tmp_path / "text_encoder"
    folder.mkdir()
    tensors = {k: v for k, v in reference.text_encoder.state_dict().items()
               if k not in ("shared.weight", "encoder.embed_tokens.weight")}
    for name in names:
        tensors[name] = reference.text_encoder.shared.weight.detach().clone()
    save_file(tensors, str(folder / "model.safetensors"))
    spec = read_pipeline(reference.dir)
    part = next(p for p in components(spec, torch.float32) if p.key == "text_encoder")
    checkpoint = Checkpoint(folder)
    assert checkpoint.mismatches(expected_tensors(part.build_meta())) == []
    module = load_module(part, checkpoint)
    assert torch.equal(module.shared.weight, reference.text_encoder.shared.weight)
    assert module.encoder.embed_tokens.weight is module.shared.weight


def test_vae_encoder_tensors_are_ignored(reference):
    names = Checkpoint(reference.dir / "vae").entries
    assert any(n.startswith("encoder.") for n in names) and "quant_conv.weight" in names


# ---- dtypes ----

def test_bf16_bundle_keeps_diffusers_float32_parameters(reference, tmp_path):
    out = tmp_path / "bf16"
    run_exporter("--from", reference.dir, "--out", out)  # bf16 is the default
    assert json.loads((out / "manifest.json").read_text())["dtype"] == "bfloat16"
    dit = torch.jit.load(str(out / "dit.pt")).state_dict()
    for name, value in reference.dit.state_dict().items():
        in_float32 = bool(DIT_FLOAT32_PARTS.intersection(name.split(".")))
        assert dit[name].dtype == (torch.float32 if in_float32 else torch.bfloat16), name
        assert torch.equal(dit[name], value.to(dit[name].dtype)), name  # rounded once, to nearest
    # diffusers' _keep_in_fp32_modules, by example:
    for name in ("scale_shift_table", "blocks.1.scale_shift_table", "blocks.0.norm2.weight",
                 "condition_embedder.time_embedder.linear_2.bias"):
        assert dit[name].dtype == torch.float32, name
    for name in ("blocks.0.attn1.to_q.weight", "condition_embedder.time_proj.weight", "proj_out.bias"):
        assert dit[name].dtype == torch.bfloat16, name
    text_encoder = torch.jit.load(str(out / "text_encoder.pt"))
    assert {v.dtype for v in text_encoder.state_dict().values()} == {torch.bfloat16}
    vae = torch.jit.load(str(out / "vae_decoder.pt")).state_dict()
    assert {v.dtype for k, v in vae.items() if not k.startswith("latents_")} == {torch.bfloat16}
    # The bf16 text encoder runs on the CPU and stays near the float32 reference.
    batch = reference.tokenizer(["a cat sleeps on a windowsill"], padding="max_length",
                                max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        actual = text_encoder(batch["input_ids"], batch["attention_mask"])
        expected = reference.text_encoder(**batch).last_hidden_state
        expected = expected * batch["attention_mask"][..., None]
    error = relative_error(actual, expected)
    print(f"bf16 text encoder against the float32 reference: relative error {error:.2e}")
    assert actual.dtype == torch.bfloat16 and error < 5e-2


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="bf16 attention runs on CUDA only (the CPU op is float32)")
def test_bf16_bundle_on_cuda_is_as_close_to_float32_as_the_references_in_bf16(reference, tmp_path):
    """Each bf16 module against the float32 reference, next to diffusers'/transformers' own bf16
    loading of the same checkpoint (which keeps the same parameters in float32)."""
    out = tmp_path / "bf16"
    export_checkpoint(reference.dir, out, dtype="bf16")
    ours = {name: torch.jit.load(str(out / f"{name}.pt"), map_location="cuda")
            for name in ("dit", "text_encoder", "vae_decoder")}
    bf16 = torch.bfloat16
    theirs_dit = diffusers.WanTransformer3DModel.from_pretrained(
        str(reference.dir / "transformer"), torch_dtype=bf16).to("cuda").eval()
    theirs_vae = diffusers.AutoencoderKLWan.from_pretrained(
        str(reference.dir / "vae"), torch_dtype=bf16).to("cuda").eval()
    theirs_text = transformers.UMT5EncoderModel.from_pretrained(
        str(reference.dir / "text_encoder"), dtype=bf16).to("cuda").eval()
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 16, 3, 16, 16, generator=gen)
    t = torch.tensor([999.0, 312.5])
    context = torch.randn(2, MAX_LENGTH, DIT["text_dim"], generator=gen)
    latents = torch.randn(1, 16, 3, 8, 8, generator=gen)
    mean = torch.tensor(LATENTS_MEAN).view(1, -1, 1, 1, 1)
    std = torch.tensor(LATENTS_STD).view(1, -1, 1, 1, 1)
    batch = reference.tokenizer(["A red fox trots across a snowy field at dawn.", ""],
                                padding="max_length", max_length=MAX_LENGTH, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    cuda = {"x": x.cuda().to(bf16), "t": t.cuda(), "context": context.cuda().to(bf16)}
    with torch.no_grad():
        results = {
            "dit": (reference.dit(x, t, context, return_dict=False)[0],
                    ours["dit"](cuda["x"], cuda["t"], cuda["context"], True, 0, 1.0, True, 64),
                    theirs_dit(cuda["x"], cuda["t"], cuda["context"], return_dict=False)[0]),
            "vae": (reference.vae.decode(latents * std + mean, return_dict=False)[0],
                    ours["vae_decoder"](latents.cuda().to(bf16)),
                    theirs_vae.decode((latents * std + mean).cuda().to(bf16), return_dict=False)[0]),
            "text_encoder": (
                reference.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                * mask[..., None],
                ours["text_encoder"](ids.cuda(), mask.cuda()),
                theirs_text(input_ids=ids.cuda(), attention_mask=mask.cuda()).last_hidden_state
                * mask.cuda()[..., None]),
        }
    for name, (truth, mine, references) in results.items():
        error_ours = relative_error(mine.float().cpu(), truth)
        error_theirs = relative_error(references.float().cpu(), truth)
        print(f"{name} bf16 on CUDA against float32: ours {error_ours:.2e}, reference "
              f"{error_theirs:.2e}")
        assert error_ours < max(2 * error_theirs, 1e-2), name


def test_fp16_keeps_umt5_wo_in_float32(reference):
    spec = read_pipeline(reference.dir)
    part = next(p for p in components(spec, torch.float16) if p.key == "text_encoder")
    module = load_module(part, Checkpoint(reference.dir / "text_encoder"))
    dtypes = {name: p.dtype for name, p in module.named_parameters()}
    assert all(d == (torch.float32 if ".wo." in n else torch.float16) for n, d in dtypes.items())


# ---- errors ----

def test_tensor_problems_are_reported_in_one_error(reference, tmp_path):
    broken = copy_pipeline(reference.dir, tmp_path / "broken")
    path = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    del tensors["blocks.0.attn1.to_q.weight"]
    tensors["blocks.1.ffn.net.0.proj.weight"] = torch.zeros(255, 128)
    tensors["blocks.0.attn1.extra.weight"] = torch.zeros(3)
    save_file(tensors, str(path))
    vae_path = broken / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(vae_path))
    del tensors["decoder.conv_out.bias"]
    save_file(tensors, str(vae_path))
    out = tmp_path / "out"
    with pytest.raises(ExportError) as error:
        export_checkpoint(broken, out, dtype="fp32")
    message = str(error.value)
    assert "missing blocks.0.attn1.to_q.weight: expected shape [128, 128]" in message
    assert "mis-shaped blocks.1.ffn.net.0.proj.weight: expected shape [256, 128], got [255, 128]" \
        in message
    assert "unexpected blocks.0.attn1.extra.weight: got shape [3]" in message
    assert "missing decoder.conv_out.bias: expected shape [3]" in message
    assert "encoder." not in message.replace("text_encoder", "")  # the VAE encoder is ignored
    assert not out.exists()  # nothing is written before every check passed
    # The command line prints the same message and exits with status 2.
    result = run_exporter("--from", broken, "--out", out, check=False)
    assert result.returncode == 2
    assert "error:" in result.stderr and "missing blocks.0.attn1.to_q.weight" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("file,changes,fragment", [
    ("transformer/config.json", {"image_dim": 1280}, "image_dim = 1280"),
    ("transformer/config.json", {"added_kv_proj_dim": 5120}, "added_kv_proj_dim = 5120"),
    ("transformer/config.json", {"in_channels": 36}, "in_channels = 36"),
    ("transformer/config.json", {"qk_norm": "rms_norm"}, 'qk_norm = "rms_norm"'),
    ("text_encoder/config.json", {"feed_forward_proj": "relu"}, 'feed_forward_proj = "relu"'),
    ("text_encoder/config.json", {"model_type": "t5"}, 'model_type = "t5"'),
    ("vae/config.json", {"is_residual": True}, "is_residual = true"),
    ("scheduler/scheduler_config.json", {"use_flow_sigmas": False}, "use_flow_sigmas = false"),
    ("scheduler/scheduler_config.json", {"solver_type": "bh1"}, 'solver_type = "bh1"'),
    ("scheduler/scheduler_config.json", {"_class_name": "DDIMScheduler"},
     '_class_name = "DDIMScheduler"'),
    ("model_index.json", {"transformer_2": ["diffusers", "WanTransformer3DModel"]}, "transformer_2"),
])
def test_unsupported_configs_are_refused_by_key(reference, tmp_path, file, changes, fragment):
    variant = copy_pipeline(reference.dir, tmp_path / "variant")
    edit_json(variant / file, **changes)
    with pytest.raises(ExportError) as error:
        export_checkpoint(variant, tmp_path / "out")
    assert str(variant / file) in str(error.value) and fragment in str(error.value)


def test_missing_sentencepiece_model(reference, tmp_path):
    variant = copy_pipeline(reference.dir, tmp_path / "variant")
    (variant / "tokenizer" / "spiece.model").unlink()
    with pytest.raises(ExportError, match="spiece.model: missing"):
        export_checkpoint(variant, tmp_path / "out")


# ---- memory ----

PEAK_PROBE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_bytes(command):
    """Peak resident set of `command`, measured by a fresh parent process that runs nothing else
    (RUSAGE_CHILDREN of the test process would include every earlier subprocess)."""
    env = dict(os.environ, PYTHONPATH=str(EXPORTER))
    env.pop("PYTHONHASHSEED", None)
    out = subprocess.run([sys.executable, "-c", PEAK_PROBE, *command], env=env, cwd=REPO,
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux


def test_peak_memory_of_a_bf16_export(reference, tmp_path):
    """A 627 MiB float32 transformer exported to bf16 (319 MiB converted). The bound is the
    converted weights plus the loader's map window and read block (weights.py, 80 MiB) plus 100 MiB
    for everything else: TorchScript compilation, the small text encoder and VAE, allocator slack,
    and the few tens of MiB by which import-time memory varies between two processes. Measured:
    384 MiB above the baseline on the 2-core CI machine (the converted weights plus the 64 MiB
    window), 266 MiB on a 16-core GPU machine. A loader that read whole tensors would need the
    largest float32 tensor (240 MiB, each FFN matrix) on top of the converted weights, which this
    bound excludes."""
    variant = copy_pipeline(reference.dir, tmp_path / "wide")
    shutil.rmtree(variant / "transformer")
    torch.manual_seed(5)
    wide = diffusers.WanTransformer3DModel(**{**DIT, "num_attention_heads": 12,
                                              "attention_head_dim": 128, "ffn_dim": 40960,
                                              "num_layers": 1})
    wide.save_pretrained(str(variant / "transformer"), safe_serialization=True)
    float32_keep = {n for n in wide.state_dict() if DIT_FLOAT32_PARTS.intersection(n.split("."))}
    converted = sum(p.numel() * (4 if n in float32_keep else 2) for n, p in wide.state_dict().items())
    largest_float32 = max(p.numel() * 4 for p in wide.state_dict().values())
    del wide
    assert largest_float32 > 200 << 20
    # Baseline: a process that imports what the export imports (torch, radial_export with the op
    # library, safetensors, transformers' tokenizer) and does nothing.
    baseline = peak_rss_bytes([sys.executable, "-c",
                               "import safetensors, transformers; "
                               "from transformers import AutoTokenizer; "
                               "import radial_export.checkpoint; "
                               "from radial_export.ops import load_radial_ops; load_radial_ops()"])
    export = peak_rss_bytes([sys.executable, "-m", "radial_export", "--from", str(variant),
                             "--out", str(tmp_path / "bundle"), "--dtype", "bf16"])
    budget = converted + MAP_WINDOW_BYTES + BLOCK_BYTES + (100 << 20)
    used = export - baseline
    print(f"peak above baseline {used / 2**20:.0f} MiB; converted weights "
          f"{converted / 2**20:.0f} MiB; budget {budget / 2**20:.0f} MiB; largest float32 tensor "
          f"{largest_float32 / 2**20:.0f} MiB")
    assert used < budget
    assert budget < converted + largest_float32
