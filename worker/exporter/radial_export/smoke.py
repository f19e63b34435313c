"""Runs a bundle end to end in Python and reports the time of each module call:
tokenize -> text encoder -> flow-matching Euler with classifier-free guidance over the DiT -> VAE.

    PYTHONPATH=worker/exporter python -m radial_export.smoke BUNDLE_DIR ["prompt"] [--threads N]

A check of the bundle and a timing reference for the C++ worker, not the product's pipeline. The
schedule is diffusers' FlowMatchEulerDiscreteScheduler with a fixed shift: timesteps spaced evenly
from 1000 * sigma_max to 1000 * sigma_min, sigmas shifted by s -> shift*s / (1 + (shift-1)*s),
then x += (sigma_next - sigma) * velocity, with sigma after the last step 0.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import sentencepiece as spm
import torch

from .ops import load_radial_ops
from .tokenizer import encode


def flow_euler_sigmas(steps: int, shift: float, num_train_timesteps: int) -> List[float]:
    def shifted(s):
        return shift * s / (1 + (shift - 1) * s)
    sigma_max, sigma_min = shifted(1.0), shifted(1.0 / num_train_timesteps)
    timesteps = np.linspace(sigma_max * num_train_timesteps, sigma_min * num_train_timesteps,
                            steps, dtype=np.float32)
    sigmas = [float(shifted(t / num_train_timesteps)) for t in timesteps]
    return sigmas + [0.0]


def run(bundle: Path, prompt: str, seed: int = 0) -> Dict:
    load_radial_ops()
    manifest = json.loads((bundle / "manifest.json").read_text())
    defaults, sampler, radial = manifest["defaults"], manifest["sampler"], manifest["radial"]
    max_length = manifest["tokenizer"]["max_length"]
    times: Dict[str, List[float]] = {"text_encoder": [], "dit": [], "vae": []}

    processor = spm.SentencePieceProcessor()
    processor.Load(str(bundle / manifest["tokenizer"]["file"]))
    encoded = [encode(processor, text, max_length) for text in (prompt, defaults["negative_prompt"])]
    ids = torch.tensor([e[0] for e in encoded], dtype=torch.long)
    mask = torch.tensor([e[1] for e in encoded], dtype=torch.long)

    text_encoder = torch.jit.load(str(bundle / manifest["text_encoder"]["file"]))
    dit = torch.jit.load(str(bundle / manifest["dit"]["file"]))
    vae = torch.jit.load(str(bundle / manifest["vae"]["file"]))

    with torch.no_grad():
        started = time.perf_counter()
        context = text_encoder(ids, mask)
        times["text_encoder"].append(time.perf_counter() - started)

        spatial = manifest["vae"]["spatial_factor"]
        latent_frames = (defaults["frames"] - 1) // manifest["vae"]["temporal_factor"] + 1
        shape = (1, manifest["vae"]["latent_channels"], latent_frames,
                 defaults["height"] // spatial, defaults["width"] // spatial)
        latents = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        sigmas = flow_euler_sigmas(sampler["steps"], sampler["shift"],
                                   sampler["num_train_timesteps"])
        for step in range(sampler["steps"]):
            dense = step < radial["dense_steps"] or step >= sampler["steps"] - radial["dense_last_steps"]
            timestep = torch.full((2,), sigmas[step] * sampler["num_train_timesteps"])
            started = time.perf_counter()
            velocity = dit(latents.expand(2, -1, -1, -1, -1), timestep, context, dense,
                           radial["dense_layers"], radial["decay"], radial["sink"], radial["block"])
            times["dit"].append(time.perf_counter() - started)
            guided = velocity[1:] + sampler["guidance"] * (velocity[:1] - velocity[1:])
            latents = latents + (sigmas[step + 1] - sigmas[step]) * guided

        started = time.perf_counter()
        video = vae(latents)
        times["vae"].append(time.perf_counter() - started)
    return {"video": video, "latents": latents, "times": times}


def main() -> None:
    parser = argparse.ArgumentParser(prog="radial_export.smoke")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("prompt", nargs="?", default="A red fox trots across a snowy field at dawn.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--tensorexpr-fuser", action="store_true",
                        help="keep TorchScript's TensorExpr (NNC) fuser on; it is off by default here "
                             "because on CPU its fused loops run single-threaded and make the VAE "
                             "several times slower (the C++ worker should turn it off too)")
    args = parser.parse_args()
    torch._C._jit_set_texpr_fuser_enabled(args.tensorexpr_fuser)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = run(args.bundle, args.prompt)
    total = time.perf_counter() - started
    video = result["video"]
    print(f"video {list(video.shape)} min {video.min():.3f} max {video.max():.3f} "
          f"std {video.std():.3f}, frame-to-frame std {video.diff(dim=2).std():.3f}")
    for name, values in result["times"].items():
        print(f"{name}: {len(values)} calls, first {values[0]:.3f} s, "
              f"median {float(np.median(values)):.3f} s")
    print(f"total (with loading) {total:.2f} s on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
