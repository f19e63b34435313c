"""Writes the fixture of tests/worker/flow_sampler_test.cc: diffusers' flow-matching samplers run on
a small vector with a made-up model, every input and output recorded.

Usage: sampler_reference.py OUT.json

For each configuration (UniPC as Wan2.1's checkpoints configure it, orders 1-3; FlowMatchEuler with
default settings) and each sample dtype (float32 as the worker's latents, float64), the case holds
the config, diffusers' timesteps and sigmas, the initial sample, the model output fed at each step
and the sample after each step. The model is a fixed nonlinear function of the sample and the
timestep, so the corrector and the multistep history see outputs that change with the sample. The
C++ test replays the recorded outputs; it never has to evaluate the model itself. `schedules` adds
timesteps and sigmas alone for steps 1..100 and more shifts.
"""
import json
import sys

import diffusers
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

SIZE = 8
UNIPC_STEPS = (1, 2, 3, 10, 50)
EULER_STEPS = (1, 8, 50)
SHIFTS = (1.0, 3.0, 5.0)
# Schedules only (no stepping): every step count a request may ask for, more shifts. The integer
# timesteps truncate sigma * 1000, so one ulp in the sigma arithmetic can move them by 1.
SCHEDULE_STEPS = range(1, 101)
SCHEDULE_SHIFTS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 8.0, 12.0, 17.0)


def unipc(shift: float, order: int) -> UniPCMultistepScheduler:
    # Wan2.1-T2V-*-Diffusers/scheduler/scheduler_config.json, with the order varied.
    return UniPCMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
        flow_shift=shift, solver_order=order, solver_type="bh2", predict_x0=True,
        lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace",
        disable_corrector=[], thresholding=False)


def euler(shift: float) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def model(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    k = torch.arange(SIZE, dtype=sample.dtype).reshape(sample.shape)
    tf = float(t) / 1000.0
    return 0.8 * torch.sin(1.3 * sample + 0.1 * k) + tf * torch.cos(k) - 0.5 * sample


def run(scheduler, steps: int, dtype: torch.dtype, seed: int) -> dict:
    scheduler.set_timesteps(steps)
    scheduler.set_begin_index(0)  # as WanPipeline does
    generator = torch.Generator().manual_seed(seed)
    # [batch, channels]: UniPC's einsum wants a batch and a channel dimension.
    sample = torch.randn(1, SIZE, generator=generator, dtype=torch.float64).to(dtype)
    initial = sample.clone()
    outputs, samples = [], []
    for t in scheduler.timesteps:
        output = model(sample, t)
        sample = scheduler.step(output, t, sample, return_dict=False)[0]
        assert sample.dtype == dtype
        outputs.append(output.flatten().tolist())
        samples.append(sample.flatten().tolist())
    return {
        "timesteps": [float(t) for t in scheduler.timesteps],
        "timesteps_dtype": str(scheduler.timesteps.dtype).replace("torch.", ""),
        "sigmas": [float(s) for s in scheduler.sigmas],
        "initial": initial.flatten().tolist(),
        "model_outputs": outputs,
        "samples": samples,
    }


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: sampler_reference.py OUT.json")
    cases = []
    seed = 0
    for dtype in (torch.float32, torch.float64):
        for order in (1, 2, 3):
            for shift in SHIFTS:
                for steps in UNIPC_STEPS:
                    seed += 1
                    case = {"name": "flow_unipc", "solver_order": order, "shift": shift, "steps": steps,
                            "num_train_timesteps": 1000, "dtype": str(dtype).replace("torch.", "")}
                    case.update(run(unipc(shift, order), steps, dtype, seed))
                    cases.append(case)
        for shift in SHIFTS:
            for steps in EULER_STEPS:
                seed += 1
                case = {"name": "flow_euler", "shift": shift, "steps": steps, "num_train_timesteps": 1000,
                        "dtype": str(dtype).replace("torch.", "")}
                case.update(run(euler(shift), steps, dtype, seed))
                cases.append(case)
    schedules = []
    for shift in SCHEDULE_SHIFTS:
        for steps in SCHEDULE_STEPS:
            for name, scheduler in (("flow_unipc", unipc(shift, 2)), ("flow_euler", euler(shift))):
                scheduler.set_timesteps(steps)
                schedules.append({"name": name, "shift": shift, "steps": steps, "num_train_timesteps": 1000,
                                  "timesteps": [float(t) for t in scheduler.timesteps],
                                  "sigmas": [float(s) for s in scheduler.sigmas]})
    with open(sys.argv[1], "w") as out:
        json.dump({"diffusers": diffusers.__version__, "cases": cases, "schedules": schedules}, out)
    print(f"sampler_reference: {len(cases)} runs, {len(schedules)} schedules (diffusers "
          f"{diffusers.__version__}) -> {sys.argv[1]}")


if __name__ == "__main__":
    main()
