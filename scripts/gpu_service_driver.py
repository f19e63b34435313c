"""Drives timed jobs through a running radial-scheduler and records what a client sees.

Started by scripts/gpu_service.sh once the scheduler and a worker are up; usable alone against any
scheduler. Only the product's public surfaces are used: radialctl's flags, its plain progress lines
on stderr, the MP4 it writes as bytes arrive and `radialctl status --json`; or, with client=grpc, the
radial.v1.VideoService Generate stream through stubs generated from proto/ (no radial_client
internals). Standard library only; grpc and the stubs are imported only for client=grpc.

A job is one --job SPEC: whitespace-separated tokens.
  HxWxF          height x width x frames (480x832x81); unset: the model's defaults
  steps=N seed=N guidance=G fps=N ...  any other key=value becomes radialctl's --key value
                 (dense-steps=12, decay=0.5, priority=1); for client=grpc the same names map to
                 GenerateRequest / RadialOptions fields
  dense          dense attention everywhere; radial (or nothing): the manifest's radial defaults
  xN             run it N times in a row
  client=radialctl|grpc|python   which client submits and follows it (default: --client); python
                 is the radial_client package (client/python), grpc raw stubs from proto/
  est=S          expected seconds, for the budget check (default: the last run of the same spec,
                 else a rough model of the step time)
  label=NAME     name in the table (default: the spec)
Each job is started only if its estimate ends before --deadline; one still running at the deadline is
cancelled and recorded as timed out. One JSON line per job goes to --out/service_jobs.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

STAGE_KEYS = ("text_encode_seconds", "denoise_seconds", "decode_seconds", "encode_seconds")
SIZE_TOKEN = re.compile(r"^(\d+)x(\d+)x(\d+)$")
REPEAT_TOKEN = re.compile(r"^x(\d+)$")
# Step time (seconds, CFG on) of a dense step at the reference token count, from docs/benchmarks.md
# (H100/H200, random-weight bundles): 1.3B 1.08 s at 480x832x81, 14B 19.3 s at 768x1280x69. Used
# only to decide whether a job can finish before the deadline; a measured run replaces it.
DENSE_STEP_AT_REFERENCE = {30: (1.08, 21 * 30 * 52), 40: (19.3, 18 * 48 * 80)}
RADIAL_STEP_FRACTION = 0.65
TEARDOWN_MARGIN_SECONDS = 5.0


@dataclass
class JobSpec:
    text: str
    label: str
    height: int = 0
    width: int = 0
    frames: int = 0
    dense: bool = False
    repeat: int = 1
    client: str = ""
    estimate: float | None = None
    options: dict[str, str] = field(default_factory=dict)  # key=value flags, names as radialctl's

    @property
    def key(self) -> str:
        """Jobs with the same key are expected to take the same time."""
        return json.dumps([self.height, self.width, self.frames, self.dense, sorted(self.options.items())])


def parse_spec(text: str, default_client: str) -> JobSpec:
    spec = JobSpec(text=text, label="", client=default_client)
    for token in text.split():
        if match := SIZE_TOKEN.match(token):
            spec.height, spec.width, spec.frames = (int(v) for v in match.groups())
        elif match := REPEAT_TOKEN.match(token):
            spec.repeat = int(match.group(1))
        elif token == "dense":
            spec.dense = True
        elif token == "radial":
            spec.dense = False
        elif "=" in token:
            key, value = token.split("=", 1)
            if key == "client":
                spec.client = value
            elif key == "est":
                spec.estimate = float(value)
            elif key == "label":
                spec.label = value
            elif key == "prompt":
                spec.options["prompt"] = value.replace("_", " ")
            else:
                spec.options[key] = value
        else:
            raise SystemExit(f"gpu_service_driver: job {text!r}: cannot read token {token!r}")
    if spec.client not in ("radialctl", "grpc", "python"):
        raise SystemExit(f"gpu_service_driver: job {text!r}: client must be radialctl, grpc or python, got {spec.client!r}")
    spec.label = spec.label or " ".join(t for t in text.split()
                                        if not t.startswith(("label=", "est=")) and not REPEAT_TOKEN.match(t))
    return spec


class MediaTimeline:
    """Reads the top-level MP4 boxes of a growing byte stream and notes when the init segment
    (ftyp+moov) ends, when the first byte after it arrived (the first media fragment's moof) and
    when that first moof+mdat was complete. Times are the caller's `now` at the update that saw it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.size = 0
        self.next_box = 0
        self.init_end: int | None = None
        self.first_fragment_end: int | None = None
        self.first_byte: float | None = None
        self.first_media: float | None = None
        self.first_fragment_complete: float | None = None
        self.last_byte: float | None = None

    def update(self, size: int, read_at, now: float) -> None:
        if size < self.size:  # the client truncated the file (a restarted job)
            self.reset()
        if size == self.size:
            return
        self.size = size
        self.last_byte = now
        if self.first_byte is None:
            self.first_byte = now
        while self.next_box + 8 <= size:
            header = read_at(self.next_box, 16)
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header[:8])
            if length == 1:
                if len(header) < 16:
                    break
                length = struct.unpack(">Q", header[8:16])[0]
            if length < 8:  # 0 (to the end) or corrupt: nothing more to learn
                self.next_box = 1 << 62
                break
            if kind == b"moof" and self.init_end is None:
                self.init_end = self.next_box
            if kind == b"mdat" and self.init_end is not None and self.first_fragment_end is None:
                self.first_fragment_end = self.next_box + length
            if kind == b"moov":
                self.init_end = self.next_box + length
            self.next_box += length
        if self.init_end is not None and self.first_media is None and size > self.init_end:
            self.first_media = now
        if self.first_fragment_end is not None and self.first_fragment_complete is None and size >= self.first_fragment_end:
            self.first_fragment_complete = now


@dataclass
class ClientRun:
    """What one client saw of one job; times in seconds since the submit call."""

    job_id: str = ""
    exit_code: int | None = None
    error: str = ""
    timed_out: bool = False
    stages: dict[str, float] = field(default_factory=dict)  # first time each stage was reported
    first_step: float | None = None
    last_step: float | None = None
    accepted: float | None = None
    end: float | None = None
    timeline: MediaTimeline = field(default_factory=MediaTimeline)
    stats: dict | None = None  # Completed.stats (grpc and python only)
    restarts: int = 0
    video: bytearray = field(default_factory=bytearray)  # the bytes a stream client received

    # The events of a Generate stream (client=grpc and client=python), `now` as above.
    def saw_progress(self, stage: str, denoising_step: bool, now: float) -> None:
        self.stages.setdefault(stage, now)
        if denoising_step:
            self.first_step = self.first_step if self.first_step is not None else now
            self.last_step = now

    def saw_chunk(self, offset: int, data: bytes, now: float) -> None:
        end = offset + len(data)
        if len(self.video) < end:
            self.video.extend(b"\0" * (end - len(self.video)))
        self.video[offset:end] = data
        self.timeline.update(len(self.video), lambda pos, n: bytes(self.video[pos:pos + n]), now)

    def saw_restart(self) -> None:
        self.restarts += 1
        self.video.clear()
        self.timeline.reset()


def run_radialctl(ctl: list[str], spec: JobSpec, prompt: str, video: Path, deadline: float, log) -> ClientRun:
    args = ctl + ["generate", spec.options.get("prompt", prompt), "-o", str(video)]
    if spec.height:
        args += ["--height", str(spec.height), "--width", str(spec.width), "--frames", str(spec.frames)]
    if spec.dense:
        args.append("--dense")
    for key, value in spec.options.items():
        if key != "prompt":
            args += [f"--{key}", value]
    log(f"$ {shlex.join(args)}")
    run = ClientRun()
    video.unlink(missing_ok=True)
    t0 = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line_pattern = re.compile(r"^job ([0-9a-f]+) (.*)$")

    def read_stderr() -> None:
        for line in process.stderr:
            now = time.monotonic() - t0
            line = line.rstrip("\n")
            log(f"[{now:8.3f}] {line}")
            match = line_pattern.match(line)
            if not match:
                continue
            run.job_id = run.job_id or match.group(1)
            what = match.group(2)
            stage = what.split(" step ")[0]  # "denoising step 3/50", "decoding step 5/81", "muxing"
            if what.startswith("accepted"):
                run.accepted = now
            elif what.startswith("restarted"):
                run.restarts += 1
            elif what.startswith(("succeeded", "failed", "cancelled")):
                pass
            else:
                if stage == "denoising" and " step " in what:
                    run.first_step = run.first_step if run.first_step is not None else now
                    run.last_step = now
                run.stages.setdefault(stage, now)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()

    def read_at(pos: int, n: int) -> bytes:
        # By path, not a kept descriptor: radialctl may create or replace the file as bytes arrive.
        with open(video, "rb") as file:
            file.seek(pos)
            return file.read(n)

    while True:
        now = time.monotonic() - t0
        try:
            run.timeline.update(os.stat(video).st_size, read_at, now)
        except FileNotFoundError:
            pass
        if process.poll() is not None:
            try:  # bytes written between the last look and the exit
                run.timeline.update(os.stat(video).st_size, read_at, time.monotonic() - t0)
            except FileNotFoundError:
                pass
            break
        if time.time() > deadline:
            run.timed_out = True
            process.terminate()  # radialctl's stream ends; the job is cancelled below
            process.wait()
            break
        time.sleep(0.005)
    run.end = time.monotonic() - t0
    reader.join(timeout=2)
    run.exit_code = process.returncode
    printed = process.stdout.read() or ""
    for line in printed.splitlines():
        log(line)
    if run.exit_code != 0:
        run.error = f"radialctl exit {run.exit_code}"
    return run


def grpc_request(pb, spec: JobSpec, prompt: str):
    request = pb.GenerateRequest(prompt=spec.options.get("prompt", prompt), height=spec.height, width=spec.width,
                                 frames=spec.frames)
    radial_fields = {f.name for f in pb.RadialOptions.DESCRIPTOR.fields}
    if spec.dense:
        request.radial.dense = True
    for key, value in spec.options.items():
        name = key.replace("-", "_")
        if key == "prompt":
            continue
        if name == "negative":
            name = "negative_prompt"
        target = request.radial if name in radial_fields else request
        descriptor = target.DESCRIPTOR.fields_by_name.get(name)
        if descriptor is None:
            raise SystemExit(f"gpu_service_driver: client=grpc: no request field for {key}={value}")
        kind = descriptor.cpp_type
        if kind == descriptor.CPPTYPE_FLOAT or kind == descriptor.CPPTYPE_DOUBLE:
            setattr(target, name, float(value))
        elif kind == descriptor.CPPTYPE_BOOL:
            setattr(target, name, value in ("1", "on", "true"))
        elif kind == descriptor.CPPTYPE_STRING:
            setattr(target, name, value)
        else:
            setattr(target, name, int(value))
    return request


def run_python(server: str, spec: JobSpec, prompt: str, video: Path, deadline: float, log) -> ClientRun:
    """One job through radial_client.RadialClient.generate, timed from its event callback."""
    run = ClientRun()
    try:
        import radial_client
    except ImportError as error:
        run.exit_code, run.end, run.error = 1, 0.0, f"client=python unavailable: {error}"
        return run
    radial_names = {f.name for f in dataclasses.fields(radial_client.RadialOptions)}
    radial: dict = {"dense": True} if spec.dense else {}
    kwargs: dict = {}
    for key, value in spec.options.items():
        name = key.replace("-", "_")
        if name == "negative":
            name = "negative_prompt"
        if name == "prompt":
            continue
        if name in radial_names:
            radial[name] = value in ("1", "on", "true") if name in ("sink", "dense") else (
                float(value) if name == "decay" else int(value))
        elif name in ("guidance",):
            kwargs[name] = float(value)
        elif name == "negative_prompt":
            kwargs[name] = value
        else:
            kwargs[name] = int(value)
    client = radial_client.RadialClient(server)
    stage_names = {radial_client.Stage.ENCODING_TEXT: "encoding text", radial_client.Stage.DENOISING: "denoising",
                   radial_client.Stage.DECODING: "decoding", radial_client.Stage.MUXING: "muxing",
                   radial_client.Stage.QUEUED: "queued"}
    t0 = time.monotonic()

    def on_event(event) -> None:
        now = time.monotonic() - t0
        run.job_id = run.job_id or event.job_id
        if isinstance(event, radial_client.Accepted):
            run.accepted = now
        elif isinstance(event, radial_client.Progress):
            run.saw_progress(stage_names.get(event.stage, str(event.stage)),
                             event.stage == radial_client.Stage.DENOISING and event.step > 0, now)
        elif isinstance(event, radial_client.Chunk):
            run.saw_chunk(event.offset, event.data, now)
        elif isinstance(event, radial_client.Restarted):
            run.saw_restart()

    try:
        job = client.generate(spec.options.get("prompt", prompt), video, width=spec.width or None,
                              height=spec.height or None, frames=spec.frames or None,
                              radial=radial_client.RadialOptions(**radial) if radial else None,
                              on_event=on_event,
                              timeout=None if deadline == float("inf") else max(1.0, deadline - time.time()),
                              **kwargs)
        run.exit_code = 0
        from google.protobuf import json_format
        run.stats = json_format.MessageToDict(job.stats, preserving_proto_field_name=True)
    except radial_client.RadialError as error:
        run.timed_out = error.code.name == "DEADLINE_EXCEEDED" if hasattr(error.code, "name") else False
        run.exit_code = 1
        run.error = f"{error}"
        run.job_id = run.job_id or (error.job_id or "")
    run.end = time.monotonic() - t0
    log(f"python client: job {run.job_id} exit {run.exit_code} in {run.end:.2f} s {run.error or ''}")
    return run


def run_grpc(server: str, spec: JobSpec, prompt: str, deadline: float, log) -> ClientRun:
    run = ClientRun()
    try:
        import grpc
        from google.protobuf import json_format
        from radial.v1 import video_service_pb2 as pb
    except ImportError as error:  # gpu_service.sh carries them; env.txt says what was found
        run.exit_code, run.end, run.error = 1, 0.0, f"client=grpc unavailable: {error}"
        return run
    request = grpc_request(pb, spec, prompt)
    log(f"grpc Generate {json_format.MessageToJson(request, indent=None)}")
    channel = grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", 64 << 20)])
    generate = channel.unary_stream("/radial.v1.VideoService/Generate",
                                    request_serializer=pb.GenerateRequest.SerializeToString,
                                    response_deserializer=pb.JobEvent.FromString)
    t0 = time.monotonic()
    stage_names = {pb.STAGE_ENCODING_TEXT: "encoding text", pb.STAGE_DENOISING: "denoising",
                   pb.STAGE_DECODING: "decoding", pb.STAGE_MUXING: "muxing", pb.STAGE_QUEUED: "queued"}
    stream = generate(request, timeout=None if deadline == float("inf") else max(1.0, deadline - time.time()))
    try:
        for event in stream:
            now = time.monotonic() - t0
            run.job_id = run.job_id or event.job_id
            kind = event.WhichOneof("event")
            if kind == "accepted":
                run.accepted = now
                log(f"[{now:8.3f}] accepted {event.job_id}")
            elif kind == "progress":
                name = stage_names.get(event.progress.stage, str(event.progress.stage))
                if name not in run.stages:
                    log(f"[{now:8.3f}] {name}")
                run.saw_progress(name, event.progress.stage == pb.STAGE_DENOISING and event.progress.step > 0, now)
            elif kind == "chunk":
                run.saw_chunk(event.chunk.offset, event.chunk.data, now)
            elif kind == "restarted":
                run.saw_restart()
            elif kind == "completed":
                run.stats = json_format.MessageToDict(event.completed.stats, preserving_proto_field_name=True)
                run.exit_code = 0
            elif kind in ("failed", "cancelled"):
                error = getattr(event, kind)
                run.exit_code = 4 if kind == "failed" else 5
                run.error = f"{kind}: code {error.code}: {error.message}"
    except grpc.RpcError as error:
        run.timed_out = error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        run.exit_code = run.exit_code if run.exit_code is not None else 1
        run.error = f"rpc {error.code().name}: {error.details()}"
    run.end = time.monotonic() - t0
    channel.close()
    return run


def radialctl_json(ctl: list[str], *args: str) -> dict | None:
    result = subprocess.run(ctl + list(args) + ["--json"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def estimate_seconds(spec: JobSpec, history: dict[str, float], defaults: dict, layers: int, first: bool) -> float:
    if spec.estimate is not None:
        return spec.estimate
    if spec.key in history:
        return history[spec.key] * 1.05
    height = spec.height or defaults.get("height", 480)
    width = spec.width or defaults.get("width", 832)
    frames = spec.frames or defaults.get("frames", 81)
    steps = int(spec.options.get("steps", defaults.get("steps", 50)))
    tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)
    step_at_reference, reference = DENSE_STEP_AT_REFERENCE.get(layers, DENSE_STEP_AT_REFERENCE[40])
    step = step_at_reference * (tokens / reference) ** 1.5
    if not spec.dense:
        step *= RADIAL_STEP_FRACTION
    fixed = 5.0 + 0.05 * frames * (height * width) / (480 * 832)  # text encoder, VAE, H.264
    warm_up = 20.0 + 3.0 * step if first else 0.0  # TorchScript's first calls at a new shape
    return 1.2 * (steps * step + fixed) + warm_up


def number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def record_for(index: int, spec: JobSpec, run: ClientRun, job: dict | None, model: str) -> dict:
    stats = (job or {}).get("stats") or run.stats or {}
    stage_values = [number(stats.get(key)) for key in STAGE_KEYS]
    pipeline = sum(v for v in stage_values if v is not None) if stats else None
    timeline = run.timeline
    wall = run.end
    request = (job or {}).get("request", {})
    record = {
        "index": index, "label": spec.label, "spec": spec.text, "client": spec.client, "model": model,
        "job_id": run.job_id, "exit_code": run.exit_code, "state": (job or {}).get("state"),
        "timed_out": run.timed_out, "error": run.error or None, "restarts": run.restarts,
        "request": {k: request.get(k) for k in ("height", "width", "frames", "steps", "guidance", "seed", "fps",
                                                "radial") if k in request},
        "client_seconds": {
            "wall": wall, "accepted": run.accepted, "stages": run.stages, "first_step": run.first_step,
            "last_step": run.last_step, "first_byte": timeline.first_byte, "first_media_fragment": timeline.first_media,
            "first_fragment_complete": timeline.first_fragment_complete, "last_byte": timeline.last_byte,
        },
        "video_bytes_received": timeline.size,
        "init_segment_bytes": timeline.init_end,
        "stats": stats,
        "scheduler_unix_ms": {k: (job or {}).get(k) for k in ("created_unix_ms", "started_unix_ms", "finished_unix_ms")},
    }
    total = number(stats.get("total_seconds"))
    worker_first = number(stats.get("first_fragment_seconds"))
    queue = number(stats.get("queue_seconds")) or 0.0
    record["derived"] = {
        # The worker's stage times added up. The worker decodes and encodes while it streams, so
        # these stages overlap and the sum can exceed the job's own time (total_seconds).
        "pipeline_seconds": pipeline,
        "wall_minus_stage_sum_seconds": wall - pipeline if wall is not None and pipeline is not None else None,
        # What the service adds around the worker's job (submit, queueing, assignment, gRPC streaming
        # through the scheduler, the client): client wall time minus the job's time on the worker.
        "serving_overhead_seconds": wall - total if wall is not None and total is not None else None,
        "client_first_fragment_minus_worker_seconds":
            timeline.first_media - (worker_first + queue) if timeline.first_media is not None and worker_first else None,
    }
    return record


def fmt(value, width: int = 7) -> str:
    return f"{value:{width}.2f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def summary_table(records: list[dict]) -> str:
    lines = [f"{'#':>2} {'label':<30} {'client':<9} {'wall':>7} {'1stfrag':>7} {'w1stfr':>7} {'text':>7} "
             f"{'denoise':>7} {'decode':>7} {'encode':>7} {'wtotal':>7} {'ovhd':>7} {'w-sum':>7} {'mask':>5} state"]
    for r in records:
        if r.get("skipped"):
            lines.append(f"{r['index']:>2} {r['label'][:30]:<30} {r['client']:<9} skipped: {r['reason']}")
            continue
        s, c = r.get("stats") or {}, r.get("client_seconds") or {}
        wall, total = number(c.get("wall")), number(s.get("total_seconds"))
        stages = [number(s.get(k)) for k in STAGE_KEYS]
        stage_sum = sum(v for v in stages if v is not None) if s else None
        state = (r.get("state") or "").replace("JOB_STATE_", "").lower() or f"exit {r.get('exit_code')}"
        if r.get("timed_out"):
            state += " (timed out)"
        lines.append(f"{r['index']:>2} {r['label'][:30]:<30} {r['client']:<9} {fmt(wall)} "
                     f"{fmt(number(c.get('first_media_fragment')))} {fmt(number(s.get('first_fragment_seconds')))} "
                     + " ".join(fmt(v) for v in stages)
                     + f" {fmt(total)} {fmt(wall - total if wall is not None and total is not None else None)}"
                     + f" {fmt(wall - stage_sum if wall is not None and stage_sum is not None else None)}"
                     + f" {fmt(number(s.get('mask_density')), 5)} {state}")
    lines.append("seconds. wall: submit to stream end, 1stfrag: submit to the first media fragment's first byte (both "
                 "the client's clock); w1stfr, text..encode, wtotal: the worker's JobStats (first_fragment_seconds, "
                 "stage times, total_seconds); ovhd: wall - wtotal; w-sum: wall - (text+denoise+decode+encode), "
                 "negative when decode and encode overlap; mask: radial mask density (1: every step dense)")
    return "\n".join(lines)


def gpu_memory(url: str) -> dict:
    """The worker's radial_worker_gpu_memory_bytes gauges (allocated, reserved, peak), in GiB."""
    import urllib.request
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError as error:
        return {"error": str(error)}
    found = {}
    for line in text.splitlines():
        if line.startswith("radial_worker_gpu_memory_bytes{"):
            kind = re.search(r'kind="([a-z]+)"', line)
            if kind:
                found[kind.group(1) + "_gib"] = round(float(line.rsplit(" ", 1)[1]) / 2**30, 2)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="scheduler HOST:PORT")
    parser.add_argument("--table", type=Path, help="print the table of this service_jobs.jsonl and exit")
    parser.add_argument("--radialctl", default="radialctl", help="radialctl command (split like a shell)")
    parser.add_argument("--job", action="append", default=[], help="job spec (see the module doc); repeatable")
    parser.add_argument("--client", default="radialctl", choices=("radialctl", "grpc", "python"),
                        help="default client")
    parser.add_argument("--prompt", default="a red fox running through deep snow at dawn, cinematic lighting")
    parser.add_argument("--deadline", type=float, default=0, help="Unix time by which every job must end (0: none)")
    parser.add_argument("--out", type=Path, help="folder for service_jobs.jsonl and client.log")
    parser.add_argument("--worker-metrics", default="",
                        help="the worker's /metrics URL: its GPU memory gauges are read after each job")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/radial-service/videos"), help="videos go here")
    args = parser.parse_args()
    if args.table:
        print(summary_table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return 0
    if not args.server or not args.out:
        parser.error("--server and --out are required")

    deadline = args.deadline or float("inf")
    ctl = shlex.split(args.radialctl) + ["--server", args.server]
    specs = [parse_spec(text, args.client) for text in args.job]
    args.out.mkdir(parents=True, exist_ok=True)
    args.scratch.mkdir(parents=True, exist_ok=True)
    log_file = open(args.out / "client.log", "a", buffering=1)

    def log(line: str) -> None:
        log_file.write(line + "\n")

    models = radialctl_json(ctl, "models") or {}
    model_info = (models.get("models") or [{}])[0]
    model = model_info.get("name", "")
    layers = int(model_info.get("layers", 40))
    defaults = model_info.get("defaults", {})
    log(f"model {model} ({layers} layers), defaults {json.dumps(defaults)}")

    records: list[dict] = []
    history: dict[str, float] = {}
    seen_shapes: set[tuple] = set()
    jsonl = open(args.out / "service_jobs.jsonl", "a", buffering=1)
    index = 0
    for spec in specs:
        for _ in range(spec.repeat):
            index += 1
            shape = (spec.height, spec.width, spec.frames, spec.dense)
            expected = estimate_seconds(spec, history, defaults, layers, shape not in seen_shapes)
            left = deadline - time.time() - TEARDOWN_MARGIN_SECONDS
            if expected > left:
                record = {"index": index, "label": spec.label, "spec": spec.text, "client": spec.client,
                          "skipped": True, "expected_seconds": round(expected, 1),
                          "reason": f"expected {expected:.0f} s, {max(left, 0):.0f} s left"}
                log(f"== job {index} {spec.label}: skipped, {record['reason']}")
            else:
                log(f"== job {index} {spec.label} (client {spec.client}, expected {expected:.0f} s, {left:.0f} s left)")
                video = args.scratch / f"job{index}.mp4"
                job_deadline = deadline - TEARDOWN_MARGIN_SECONDS
                if spec.client == "grpc":
                    run = run_grpc(args.server, spec, args.prompt, job_deadline, log)
                elif spec.client == "python":
                    run = run_python(args.server, spec, args.prompt, video, job_deadline, log)
                else:
                    run = run_radialctl(ctl, spec, args.prompt, video, job_deadline, log)
                if not run.job_id:  # radialctl's progress lines changed: the newest job is this one
                    newest = (radialctl_json(ctl, "jobs", "--limit", "1") or {}).get("jobs") or [{}]
                    run.job_id = newest[0].get("id", "")
                if run.timed_out and run.job_id:
                    subprocess.run(ctl + ["cancel", run.job_id], capture_output=True, timeout=30)
                job = radialctl_json(ctl, "status", run.job_id) if run.job_id else None
                record = record_for(index, spec, run, job, model)
                record["expected_seconds"] = round(expected, 1)
                if args.worker_metrics:
                    record["gpu_memory_after"] = gpu_memory(args.worker_metrics)
                if run.exit_code == 0 and run.end is not None:
                    history[spec.key] = run.end
                seen_shapes.add(shape)
                video.unlink(missing_ok=True)
                log(f"== job {index}: exit {run.exit_code}, wall {run.end:.2f} s, {run.timeline.size} bytes")
            records.append(record)
            jsonl.write(json.dumps(record) + "\n")
    table = summary_table(records)
    print(table)
    failed = [r for r in records if not r.get("skipped") and r.get("exit_code") != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
