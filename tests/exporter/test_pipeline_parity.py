"""The whole C++ pipeline against diffusers' WanPipeline on the same weights.

A small WanPipeline with seeded random weights (the `reference` fixture of conftest.py, saved with
save_pretrained) is exported with `radial_export --from`, generated from by the C++ pipeline
(`pipeline_trace`, tests/worker/pipeline_trace.cc: the worker's Pipeline on the CPU, dense
attention) and by `diffusers.WanPipeline` with the same modules, scheduler and tokenizer, with the same
prompt, negative prompt, guidance, steps, seed and hence the same initial noise. The final latents and
the decoded frames agree within 1e-3 of the largest value; the token ids of a set of prompts
(Unicode, whitespace runs, HTML entities, truncation, the empty prompt) are equal.

The C++ side draws its initial noise with at::randn on a CPU generator seeded with the request's seed;
torch.randn with torch.Generator().manual_seed(seed) draws the same numbers (checked below through
the first step: a different start would show in every comparison)."""

import json
import os
import subprocess

import numpy
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers.pipelines.wan.pipeline_wan import prompt_clean  # noqa: E402

from conftest import relative_error, run_exporter  # noqa: E402

TRACE = os.environ.get("RADIAL_PIPELINE_TRACE_BIN")
TOLERANCE = 1e-3
REQUEST = dict(prompt="  A red fox &amp; a hare\n\tplaying in   the snow, golden light ",
               negative_prompt="blurry, low quality", width=64, height=48, frames=9, steps=5,
               guidance=5.0, seed=1234)
PROMPTS = ["a red fox in the snow", "  runs   of\twhitespace\n and\u3000ideographic space  ",
           "Unicode: caf\u00e9, na\u00efve, \u65e5\u672c\u8a9e, emoji \U0001F98A, \u00c5ngstr\u00f6m",
           "fish &amp; chips &lt;3 &#65;", "", "word " * 300]


@pytest.fixture(scope="module")
def bundle(reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("parity") / "bundle"
    run_exporter("--from", reference.dir, "--out", out, "--dtype", "fp32")
    return out


@pytest.fixture(scope="module")
def cpp(bundle, tmp_path_factory):
    """What pipeline_trace wrote: trace.json, latents [1,16,F,H,W], video [1,3,T,H,W] in [-1, 1]."""
    if not TRACE:
        pytest.skip("RADIAL_PIPELINE_TRACE_BIN is not set (ctest sets it)")
    out = tmp_path_factory.mktemp("trace")
    prompts = out / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    r = REQUEST
    command = [TRACE, "--bundle", bundle, "--out", out, "--prompt", r["prompt"],
               "--negative-prompt", r["negative_prompt"], "--width", r["width"], "--height", r["height"],
               "--frames", r["frames"], "--steps", r["steps"], "--guidance", r["guidance"],
               "--seed", r["seed"], "--dense", 1, "--prompts-json", prompts]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    trace = json.loads((out / "trace.json").read_text())

    def tensor(name):
        return torch.from_numpy(numpy.fromfile(out / f"{name}.f32", dtype="<f4").reshape(trace[name]))
    return {"trace": trace, "latents": tensor("latents"), "video": tensor("video")}


@pytest.fixture(scope="module")
def diffusers_run(reference, bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    # The saved directory's scheduler and tokenizer, and the modules whose weights were saved there
    # (WanPipeline.from_pretrained would load the same weights but needs the accelerate package for
    # modules with float32-kept parts, which is not installed).
    transformers = pytest.importorskip("transformers")
    pipe = diffusers.WanPipeline(
        tokenizer=transformers.AutoTokenizer.from_pretrained(str(reference.dir / "tokenizer")),
        text_encoder=reference.text_encoder, vae=reference.vae, transformer=reference.dit,
        scheduler=diffusers.UniPCMultistepScheduler.from_pretrained(str(reference.dir / "scheduler")))
    r = REQUEST
    shape = (1, 16, (r["frames"] - 1) // 4 + 1, r["height"] // 8, r["width"] // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(r["seed"]), dtype=torch.float32)
    captured = {}

    def keep_latents(pipeline, step, timestep, kwargs):
        captured["latents"] = kwargs["latents"].clone()
        captured.setdefault("timesteps", []).append(int(timestep))
        return kwargs

    with torch.no_grad():
        video = pipe(prompt=r["prompt"], negative_prompt=r["negative_prompt"], height=r["height"],
                     width=r["width"], num_frames=r["frames"], num_inference_steps=r["steps"],
                     guidance_scale=r["guidance"], latents=noise, output_type="pt",
                     max_sequence_length=manifest["tokenizer"]["max_length"],
                     callback_on_step_end=keep_latents).frames  # [1, T, 3, H, W] in [0, 1]
    return {"latents": captured["latents"], "video": video, "timesteps": captured["timesteps"],
            "pipe": pipe, "max_length": manifest["tokenizer"]["max_length"]}


def test_final_latents_match_wanpipeline(cpp, diffusers_run):
    ours, theirs = cpp["latents"], diffusers_run["latents"]
    assert ours.shape == theirs.shape
    error = relative_error(ours, theirs)
    print(f"final latents: relative error {error:.2e}; timesteps {diffusers_run['timesteps']}")
    assert error < TOLERANCE


def test_decoded_frames_match_wanpipeline(cpp, diffusers_run):
    ours = ((cpp["video"] + 1) / 2).permute(0, 2, 1, 3, 4)  # -> [1, T, 3, H, W] in [0, 1]
    theirs = diffusers_run["video"]
    assert ours.shape == theirs.shape == (1, REQUEST["frames"], 3, REQUEST["height"], REQUEST["width"])
    error = relative_error(ours, theirs)
    print(f"decoded frames: relative error {error:.2e}")
    assert error < TOLERANCE
    # Not a trivial agreement: the frames vary.
    assert theirs.std() > 0.01


def test_token_ids_match_the_transformers_tokenizer(cpp, diffusers_run):
    tokenizer = diffusers_run["pipe"].tokenizer
    max_length = diffusers_run["max_length"]
    for prompt, ours in zip(PROMPTS, cpp["trace"]["tokens"]):
        theirs = tokenizer(prompt_clean(prompt), padding="max_length", max_length=max_length,
                           truncation=True, add_special_tokens=True, return_attention_mask=True)
        assert ours["ids"] == theirs["input_ids"], prompt
        assert ours["mask"] == theirs["attention_mask"], prompt
    assert sum(cpp["trace"]["tokens"][-1]["mask"]) == max_length  # the long prompt was truncated
