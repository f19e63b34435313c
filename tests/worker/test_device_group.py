"""Device groups on the CPU (Gloo): one video on 2 and 4 processes (worker/runtime/device_group.h).

- pipeline_trace --devices cpu,... must give the final latents of one process (fp32, 1e-5 of their
  largest value): sequence parallelism alone (2 ranks, the tiny model's 2 heads), CFG parallelism
  alone (2), both (4 = 2 CFG x 2), a token count that does not split evenly, a dense request.
- Layouts the model cannot take are refused with a message naming --devices.
- Through the service: a follower rank SIGKILLed while it denoises makes the worker hand the job
  back, the scheduler requeues it, the group restarts, and the job then succeeds on the same worker.

Environment (set by ctest): RADIAL_PIPELINE_TRACE_BIN, RADIAL_SCHEDULER_BIN, RADIAL_WORKER_BIN,
RADIAL_TEST_BUNDLE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
from test_python_client import Stack  # noqa: E402  (scheduler + worker processes with their logs)

BUNDLE = os.environ.get("RADIAL_TEST_BUNDLE", "")
TRACE = os.environ.get("RADIAL_PIPELINE_TRACE_BIN", "")


def trace(out: Path, *extra, width=128, height=128, steps=3, guidance="5", dense="0"):
    out.mkdir(parents=True, exist_ok=True)
    args = [TRACE, "--bundle", BUNDLE, "--prompt", "a red fox in the snow", "--negative-prompt", "blurry",
            "--width", width, "--height", height, "--frames", 17, "--steps", steps, "--guidance", guidance,
            "--seed", 7, "--dense", dense, "--out", out, *extra]
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    return result


def latents(out: Path) -> np.ndarray:
    return np.fromfile(out / "latents.f32", dtype=np.float32)


CASES = {
    "ulysses-2": (["--devices", "cpu,cpu"], {}),
    "cfg-2": (["--devices", "cpu,cpu", "--cfg-parallel", "true"], {}),
    "cfg-2-x-ulysses-2": (["--devices", "cpu,cpu,cpu,cpu", "--cfg-parallel", "true"], {}),
    # 144x144: 9 x 9 = 81 tokens a latent frame, 405 in all, odd: the ranks get 203 and 202.
    "ulysses-2-ragged": (["--devices", "cpu,cpu"], {"width": 144, "height": 144}),
    "ulysses-2-dense": (["--devices", "cpu,cpu"], {"dense": "1"}),
    "cfg-2-x-ulysses-2-unguided": (["--devices", "cpu,cpu,cpu,cpu", "--cfg-parallel", "true"], {"guidance": "1"}),
}


@pytest.mark.parametrize("name", CASES)
def test_group_gives_the_single_process_latents(tmp_path, name):
    extra, size = CASES[name]
    single = trace(tmp_path / "single", **size)
    assert single.returncode == 0, single.stderr
    group = trace(tmp_path / "group", *extra, **size)
    assert group.returncode == 0, group.stderr
    expected, got = latents(tmp_path / "single"), latents(tmp_path / "group")
    assert got.shape == expected.shape and expected.size > 0
    error = float(np.abs(got - expected).max())
    assert error <= 1e-5 * float(np.abs(expected).max()), f"{name}: max difference {error}"
    report = json.loads(group.stdout.strip().splitlines()[-1])
    assert report["steps"] == 3


@pytest.mark.parametrize("extra,message", [
    (["--devices", "cpu,cpu,cpu"], "does not divide the 2 attention heads"),
    (["--devices", "cpu,cpu,cpu", "--cfg-parallel", "true"], "expected an even number"),
    (["--devices", "cpu,cuda:0"], "expected all cpu or all cuda:N"),
    (["--devices", "cuda:0,cuda:0"], "distinct 'cuda:N'"),
    (["--cfg-parallel", "true"], "needs --devices"),
])
def test_layouts_the_model_cannot_take_are_refused(tmp_path, extra, message):
    result = trace(tmp_path / "out", *extra)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_a_follower_started_by_hand_says_so():
    result = subprocess.run([TRACE, "--radial-group-member"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "not by hand" in result.stderr


class GroupStack(Stack):
    def start_worker(self):
        self.start("worker", [os.environ["RADIAL_WORKER_BIN"], "--bundle", BUNDLE, "--scheduler",
                              f"127.0.0.1:{self.worker_port}", "--worker-id", "group-test", "--drain-seconds", "0",
                              "--warmup", "off", "--devices", "cpu,cpu"])

    def followers(self) -> list[int]:
        """The worker's follower processes (children started with --radial-group-member)."""
        worker = self.processes["worker"].pid
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == worker and b"--radial-group-member" in cmdline:
                found.append(int(entry.name))
        return found


def test_a_follower_killed_mid_job_requeues_the_job_and_the_group_restarts(tmp_path):
    import radial_client as rc
    stack = GroupStack(tmp_path, [])
    try:
        stack.start_worker()
        with rc.RadialClient(stack.address) as client:
            stack.await_worker(client)
            [first_follower] = stack.followers()
            # Enough steps that the job is still denoising when the follower dies.
            job = client.submit("a lighthouse in a storm", width=128, height=128, frames=17, steps=60, seed=3)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state = client.get(job.id)
                if state.progress.stage == rc.Stage.DENOISING and state.progress.step >= 2:
                    break
                time.sleep(0.05)
            else:
                stack.fail("the job did not reach denoising step 2 within 60 s")
            os.kill(first_follower, 9)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                state = client.get(job.id)
                if state.state in (rc.JobState.SUCCEEDED, rc.JobState.FAILED, rc.JobState.CANCELLED):
                    break
                time.sleep(0.2)
            if state.state != rc.JobState.SUCCEEDED:
                stack.fail(f"job ended {state.state} ({state.error.message}), expected SUCCEEDED after a requeue")
            assert state.attempts == 2, state
            assert state.worker_id == "group-test"
            # A new follower runs the next jobs; the killed one is gone.
            followers = stack.followers()
            assert len(followers) == 1 and followers != [first_follower], followers
        worker_log = (tmp_path / "worker.log").read_text()
        scheduler_log = (tmp_path / "scheduler.log").read_text()
        assert "was killed by signal 9" in worker_log, worker_log[-3000:]
        assert "handed back" in worker_log
        assert "requeued" in scheduler_log
    finally:
        stack.close()
