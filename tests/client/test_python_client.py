"""The Python client package (client/python) against a real radial-scheduler and radial-worker.

The package is built the way pip builds it from an sdist: an sdist of client/python, then a wheel
from that sdist alone (so it must carry its .proto), offline (--no-index --no-build-isolation: the
build requirements, grpcio-tools and setuptools, are in .venv), installed into a temporary directory
put first on sys.path. The test therefore runs the sources as they are, not an older install.

The scheduler runs with a tokens file (tenants alpha and beta, and an admin) and a separate worker
listener, both on 127.0.0.1 port 0 (the ports come back through --port-file/--worker-port-file); one
real worker serves the tiny bundle. The last test SIGKILLs the scheduler and starts it again on the
same ports and data dir, which the other tests do not need.

Environment (set by ctest): RADIAL_SCHEDULER_BIN, RADIAL_WORKER_BIN, RADIAL_TEST_BUNDLE.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "client" / "python"
START_SECONDS = 60  # scheduler listening; worker loaded and registered
TOKENS = {"alpha": "alpha-token-0123456789", "beta": "beta-token-0123456789", "ops": "ops-token-0123456789"}
ROLES = {"alpha": "user", "beta": "user", "ops": "admin"}
# Requests the tiny model runs in about a second on a CPU (the VAE decode of its default 128x128x17
# takes ten times longer than these).
SHORT = dict(width=64, height=64, frames=5, steps=2, seed=11)


def _run(args, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    """The radial_client module, built and installed from client/python for this run."""
    dist = tmp_path_factory.mktemp("dist")
    build_sdist = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dist)!r}))"
    sdist = _run([sys.executable, "-c", build_sdist], cwd=PACKAGE)
    assert sdist.returncode == 0, sdist.stdout + sdist.stderr
    archive = dist / sdist.stdout.strip().splitlines()[-1]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheel = _run([*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", dist, archive])
    assert wheel.returncode == 0, wheel.stdout + wheel.stderr
    [built] = dist.glob("radial_client-*.whl")
    target = tmp_path_factory.mktemp("site")
    install = _run([*pip, "install", "--no-deps", "--no-index", "--target", target, built])
    assert install.returncode == 0, install.stdout + install.stderr
    assert (target / "radial_client" / "py.typed").exists()
    assert (target / "radial_client" / "_proto" / "video_service_pb2.pyi").exists()
    sys.path.insert(0, str(target))
    module = importlib.import_module("radial_client")
    assert Path(module.__file__).is_relative_to(target), module.__file__
    return module


class Stack:
    """A radial-scheduler started with `flags` (and maybe a radial-worker), as processes in `work`
    with their logs; close() stops them."""

    def __init__(self, work: Path, flags):
        self.work = work
        self.processes: dict[str, subprocess.Popen] = {}
        self.scheduler_args = ["--data-dir", work / "data", "--sqlite-synchronous", "normal", *flags]
        self.port, self.worker_port = self.start_scheduler(0, 0)
        self.address = f"127.0.0.1:{self.port}"

    def start(self, name, args):
        with open(self.work / f"{name}.log", "a") as log:
            self.processes[name] = subprocess.Popen([str(a) for a in args], stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True)

    def start_scheduler(self, port, worker_port):
        """Starts the scheduler on these ports (0: any free one); returns the ports it listens on."""
        files = [self.work / "port", self.work / "worker-port"]
        for file in files:
            file.unlink(missing_ok=True)
        self.start("scheduler", [os.environ["RADIAL_SCHEDULER_BIN"], "--listen", f"127.0.0.1:{port}",
                                 "--port-file", files[0], "--worker-listen", f"127.0.0.1:{worker_port}",
                                 "--worker-port-file", files[1], *self.scheduler_args])
        return [self.await_port(file) for file in files]

    def await_port(self, file):
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.processes["scheduler"].poll() is not None:
                self.fail("radial-scheduler exited at start")
            try:
                return int(file.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)  # not written yet, or half written
        self.fail(f"radial-scheduler wrote no {file.name} within {START_SECONDS} s")

    def start_worker(self):
        self.start("worker", [os.environ["RADIAL_WORKER_BIN"], "--bundle", os.environ["RADIAL_TEST_BUNDLE"],
                              "--scheduler", f"127.0.0.1:{self.worker_port}", "--worker-id", "python-client-test",
                              "--drain-seconds", "0", "--warmup", "off"])

    def await_worker(self, client):
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    self.fail(f"radial-{name} exited while waiting for the worker")
            models = client.list_models()
            if models.models and models.models[0].workers == 1:
                return
            time.sleep(0.1)
        self.fail(f"the worker did not register within {START_SECONDS} s")

    def kill_scheduler(self):
        process = self.processes["scheduler"]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def fail(self, message):
        logs = "".join(f"\n--- {log.name}:\n{log.read_text()[-3000:]}" for log in sorted(self.work.glob("*.log")))
        pytest.fail(message + logs)

    def close(self):
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The scheduler with a tokens file (tenants alpha and beta, admin ops) and one worker."""
    work = tmp_path_factory.mktemp("stack")
    tokens = work / "tokens"
    tokens.write_text("".join(f"{hashlib.sha256(token.encode()).hexdigest()} {tenant} {ROLES[tenant]}\n"
                              for tenant, token in TOKENS.items()))
    stack = Stack(work, ["--tokens", tokens])
    try:
        stack.start_worker()
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def client(rc, stack):
    """Tenant alpha's client, once the worker serves the tiny model."""
    with rc.RadialClient(stack.address, token=TOKENS["alpha"]) as client:
        stack.await_worker(client)
        yield client


def _probe(path):
    """codec, width, height and frame count of an MP4 (ffprobe), or None without ffprobe."""
    if not shutil.which("ffprobe"):
        return None
    result = _run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                   "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", path])
    assert result.returncode == 0, result.stderr
    codec, width, height, frames = result.stdout.strip().split(",")
    return codec, int(width), int(height), int(frames)


def _leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".part"))


def _chunks_of(events):
    return b"".join(e.data for e in events if type(e).__name__ == "Chunk")


def test_list_models_shows_the_tiny_model(client):
    models = client.list_models()
    assert models.default_model == "wan2.1-tiny"
    [model] = models.models
    assert (model.name, model.workers, model.size_multiple, model.frame_step) == ("wan2.1-tiny", 1, 16, 4)
    assert (model.width.min, model.width.max) == (64, 512)
    assert model.defaults.width == 128 and model.defaults.frames == 17


def test_generate_writes_the_mp4_as_chunks_arrive_and_renames_it_at_the_end(rc, client, tmp_path):
    out = tmp_path / "lighthouse.mp4"
    progress, sizes = [], []

    def on_event(event):
        if isinstance(event, rc.Chunk):
            # The chunk is in the temporary file already; the destination appears only at the end.
            [part] = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
            sizes.append(part.stat().st_size)
            assert sizes[-1] == event.offset + len(event.data)
            assert not out.exists()

    job = client.generate("a lighthouse at night, waves", out, width=64, frames=9, steps=4, seed=3,
                          fragment_frames=4, progress=progress.append, on_event=on_event)
    assert job.state == rc.JobState.SUCCEEDED
    assert job.request.steps == 4 and job.request.seed == 3 and job.request.fragment_frames == 4
    assert (job.request.width, job.request.height, job.request.frames) == (64, 128, 9)  # height: the default
    data = out.read_bytes()
    assert data[4:8] == b"ftyp"
    assert len(data) == job.bytes_produced == job.stats.video_bytes
    assert sizes and sizes == sorted(sizes) and sizes[-1] == len(data)
    assert _leftovers(tmp_path) == []
    probe = _probe(out)
    assert probe is None or probe == ("h264", 64, 128, 9), probe

    # Progress: stages in order and counts rising within each. A watcher gets the job's latest
    # progress, so a slow one may skip a step, but never sees one twice or out of order.
    assert all(isinstance(p, rc.Progress) and p.job_id == job.id for p in progress)
    order = [(p.stage, p.step) for p in progress]
    assert order == sorted(order), order
    steps = [p.step for p in progress if p.stage == rc.Stage.DENOISING]
    assert steps and steps == sorted(set(steps)) and set(steps) <= {1, 2, 3, 4}, steps
    assert {p.total for p in progress if p.stage == rc.Stage.DENOISING} == {4}


def test_submit_then_watch_from_an_offset_download_and_get(rc, client, tmp_path):
    job = client.submit("a tiny red boat", **SHORT)
    assert job.id and job.request.steps == 2 and job.request.seed == 11
    assert job.state in (rc.JobState.QUEUED, rc.JobState.RUNNING)

    events = list(client.watch(job.id))
    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "Completed" and "Chunk" in kinds, kinds
    assert all(e.job_id == job.id for e in events)
    video = _chunks_of(events)
    assert events[-1].stats.video_bytes == len(video)

    # From an offset: the chunks start exactly there and hold the rest of the same bytes.
    offset = len(video) // 2
    tail = [e for e in client.watch(job.id, from_offset=offset, attempt=1) if isinstance(e, rc.Chunk)]
    assert tail[0].offset == offset
    assert b"".join(e.data for e in tail) == video[offset:]

    ended = client.get(job.id)
    assert ended.state == rc.JobState.SUCCEEDED and ended.bytes_produced == len(video)
    assert ended.stats.frames == 5 and ended.attempts == 1 and ended.tenant == "alpha"

    # download() of an ended job, and generate() of the same request: the same bytes (same seed).
    downloaded = client.download(job.id, tmp_path / "boat.mp4")
    assert downloaded.id == job.id and (tmp_path / "boat.mp4").read_bytes() == video
    again = client.generate("a tiny red boat", tmp_path / "again.mp4", **SHORT)
    assert again.id != job.id and (tmp_path / "again.mp4").read_bytes() == video

    # Past the end of the video: OUT_OF_RANGE.
    with pytest.raises(rc.RadialError) as error:
        list(client.watch(job.id, from_offset=len(video) + 1))
    assert error.value.code == grpc.StatusCode.OUT_OF_RANGE and error.value.job_id == job.id


def test_list_jobs_filters_by_state_and_delete_removes(rc, client):
    job = client.submit("a paper crane", **SHORT)
    list(client.watch(job.id))
    listed = client.list_jobs(states=[rc.JobState.SUCCEEDED])
    assert job.id in [j.id for j in listed]
    assert all(j.state == rc.JobState.SUCCEEDED for j in listed)
    assert [j.id for j in client.list_jobs(limit=1)] == [job.id]  # newest first
    assert client.list_jobs(states=[rc.JobState.FAILED]) == []

    deleted = client.delete(job.id)
    assert deleted.id == job.id and deleted.state == rc.JobState.SUCCEEDED
    with pytest.raises(rc.RadialError) as error:
        client.get(job.id)
    assert error.value.code == grpc.StatusCode.NOT_FOUND and error.value.job_id == job.id
    assert job.id not in [j.id for j in client.list_jobs()]


def test_cancel_during_generate_raises_and_leaves_no_file(rc, client, tmp_path):
    out = tmp_path / "long.mp4"
    denoising = threading.Event()
    job_ids = []
    outcome = {}

    def on_event(event):
        job_ids.append(event.job_id)
        if isinstance(event, rc.Progress) and event.stage == rc.Stage.DENOISING:
            denoising.set()

    def generate():
        try:
            outcome["job"] = client.generate("a long, slow sunrise", out, **dict(SHORT, steps=60), on_event=on_event)
        except rc.RadialError as error:
            outcome["error"] = error

    thread = threading.Thread(target=generate)
    thread.start()
    try:
        assert denoising.wait(START_SECONDS), "the job never reached denoising"
        cancelled = client.cancel(job_ids[0])
        assert cancelled.id == job_ids[0]
    finally:
        thread.join(START_SECONDS)
    assert not thread.is_alive()
    error = outcome.get("error")
    assert error is not None, outcome
    assert error.code == grpc.StatusCode.CANCELLED and error.job_id == job_ids[0]
    assert not out.exists() and _leftovers(tmp_path) == []

    job = client.get(job_ids[0])
    assert job.state == rc.JobState.CANCELLED and job.progress.step < 60
    with pytest.raises(rc.RadialError) as again:
        client.cancel(job.id)
    assert again.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_bad_input_is_invalid_argument_naming_the_field(rc, client, tmp_path):
    out = tmp_path / "bad.mp4"
    with pytest.raises(rc.RadialError) as error:
        client.generate("x", out, width=100)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.message.startswith("width: got 100, expected a multiple of 16"), error.value.message
    assert error.value.job_id is None
    assert not out.exists() and _leftovers(tmp_path) == []

    with pytest.raises(rc.RadialError) as error:
        client.submit("x", radial=rc.RadialOptions(block=96))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "block" in error.value.message, error.value.message

    with pytest.raises(rc.RadialError) as error:
        client.get("no-such-job")
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ValueError):
        client.submit("x", width=-1)  # a uint32 field cannot hold it: refused before sending
    with pytest.raises(FileNotFoundError):
        client.generate("x", tmp_path / "missing-dir" / "out.mp4", **SHORT)  # before any job is made


def test_tokens_authenticate_and_separate_tenants(rc, stack, client):
    job = client.submit("alpha's secret garden", **SHORT)
    with rc.RadialClient(stack.address) as anonymous:
        with pytest.raises(rc.RadialError) as error:
            anonymous.list_models()
        assert error.value.code == grpc.StatusCode.UNAUTHENTICATED
    with rc.RadialClient(stack.address, token="not-a-known-token") as stranger:
        with pytest.raises(rc.RadialError) as error:
            stranger.get(job.id)
        assert error.value.code == grpc.StatusCode.UNAUTHENTICATED
    with rc.RadialClient(stack.address, token=TOKENS["beta"]) as beta:
        with pytest.raises(rc.RadialError) as error:
            beta.get(job.id)
        assert error.value.code == grpc.StatusCode.NOT_FOUND  # exactly like a job that does not exist
        assert job.id not in [j.id for j in beta.list_jobs()]
    with rc.RadialClient(stack.address, token=TOKENS["ops"]) as admin:
        assert admin.get(job.id).tenant == "alpha"
    with pytest.raises(ValueError) as bad:
        rc.RadialClient(stack.address, token="two words")
    assert "two words" not in str(bad.value)
    with pytest.warns(RuntimeWarning, match="without TLS"):
        rc.RadialClient("scheduler.example:50051", token=TOKENS["alpha"]).close()
    list(client.watch(job.id))  # leaves the worker idle for the next test


def test_tls_with_a_ca_file(rc, tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command line")
    ca_key, ca, key, csr, cert, ext = (tmp_path / n for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                               "server.pem", "server.ext"))
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for args in (["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
                  "-days", "2", "-subj", "/CN=radial test CA"],
                 ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                  "-subj", "/CN=radial test server"],
                 ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                  "-out", cert, "-days", "2", "-extfile", ext]):
        made = _run(args)
        assert made.returncode == 0, made.stderr
    tls = Stack(tmp_path, ["--tls-cert", cert, "--tls-key", key])  # no worker: TLS is what is tested
    try:
        address = f"127.0.0.1:{tls.port}"
        with rc.RadialClient(address, tls_ca=ca) as secure:
            secure.wait_ready()
            assert list(secure.list_models().models) == []
        with rc.RadialClient(address, tls_ca=ca, tls_server_name="localhost") as named:
            named.list_models()
        with rc.RadialClient(address) as plaintext:
            with pytest.raises(rc.RadialError) as error:
                plaintext.list_models(timeout=10)
            assert error.value.code == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(rc.RadialError) as error:
                plaintext.wait_ready(timeout=0.5)
            assert error.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ValueError, match="no PEM certificate"):
            rc.RadialClient(address, tls_ca=key)
    finally:
        tls.close()


def test_reflection_lists_the_services(stack, client):
    # What grpcurl does first: ask the server's reflection service which services it has.
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    with grpc.insecure_channel(stack.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              metadata=[("authorization", f"Bearer {TOKENS['alpha']}")], timeout=10)
        names = {service.name for response in responses for service in response.list_services_response.service}
    assert {"radial.v1.VideoService", "grpc.health.v1.Health"} <= names, names


def test_generate_follows_its_job_across_a_scheduler_restart(rc, stack, client, tmp_path):
    """Runs last: SIGKILLs the scheduler while the job denoises (the init segment already in the
    file), starts it on the same ports and data dir; generate() reconnects with Watch from its bytes
    and attempt 1, is told the job restarted as attempt 2, and writes the new attempt from byte 0."""
    out = tmp_path / "restarted.mp4"
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, rc.Progress) and event.stage == rc.Stage.DENOISING and not any(
                isinstance(e, rc.Progress) and e.stage == rc.Stage.DENOISING for e in events[:-1]):
            stack.kill_scheduler()
            stack.start_scheduler(stack.port, stack.worker_port)

    job = client.generate("a comet over the mountains", out, **dict(SHORT, steps=8, seed=9), on_event=on_event,
                          reconnect_timeout=START_SECONDS)
    restarts = [e for e in events if isinstance(e, rc.Restarted)]
    assert [r.attempt for r in restarts] == [2], [type(e).__name__ for e in events]
    first_attempt = _chunks_of(events[:events.index(restarts[0])])
    assert first_attempt, "the init segment comes before the first denoising step"
    data = out.read_bytes()
    assert data.startswith(first_attempt)  # the same seed: attempt 2 begins with the same bytes
    assert job.state == rc.JobState.SUCCEEDED and job.attempts == 2
    assert len(data) == job.bytes_produced == job.stats.video_bytes
    assert _leftovers(tmp_path) == []
    probe = _probe(out)
    assert probe is None or probe == ("h264", 64, 64, 5), probe

