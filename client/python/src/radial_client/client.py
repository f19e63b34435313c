"""RadialClient: the calls of radial.v1.VideoService, and a job's video followed into a file."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import grpc

from ._proto import video_service_pb2 as pb
from ._proto import video_service_pb2_grpc as pb_grpc
from .errors import RadialError
from .events import Cancelled, Chunk, Completed, Failed, JobEvent, JobState, Progress, Restarted, event_from_proto
from .video_file import VideoFile

ProgressCallback = Callable[[Progress], object]
"""Called with each Progress event of the job being followed."""
EventCallback = Callable[[JobEvent], object]
"""Called with every event of the job being followed, after the client has handled it."""

_RECONNECT_DELAY_FIRST = 0.2
_RECONNECT_DELAY_MAX = 2.0


@dataclasses.dataclass(frozen=True)
class RadialOptions:
    """Radial attention knobs of a request (radial.v1.RadialOptions). None: the model's default.

    decay: band-width multiplier for frame distances >= 2, in (0, 10]; smaller is sparser.
    sink: every query frame attends all of frame 0. block: mask tile size, 64 or 128 tokens.
    dense_layers: blocks below this index use dense attention. dense_steps / dense_last_steps: the
    first / last denoising steps that use dense attention. dense: dense attention everywhere.
    """

    decay: float | None = None
    sink: bool | None = None
    block: int | None = None
    dense_layers: int | None = None
    dense_steps: int | None = None
    dense_last_steps: int | None = None
    dense: bool | None = None

    def to_proto(self) -> pb.RadialOptions:
        message = pb.RadialOptions()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                setattr(message, field.name, value)
        return message


def build_request(prompt: str, *, model: str | None = None, negative_prompt: str | None = None,
                  width: int | None = None, height: int | None = None, frames: int | None = None,
                  fps: int | None = None, steps: int | None = None, guidance: float | None = None,
                  seed: int | None = None, priority: int = 0, radial: RadialOptions | None = None,
                  fragment_frames: int | None = None, request_id: str | None = None,
                  queue_timeout: int | None = None, run_timeout: int | None = None) -> pb.GenerateRequest:
    """The radial.v1.GenerateRequest of these arguments; None (or 0) leaves a field to the model's
    default, which the server fills in (Job.request and Accepted.request show the resolved values).

    Ranges are checked by the server, whose INVALID_ARGUMENT message names the field and the
    allowed range. A value the protobuf field cannot hold at all (a negative size) raises ValueError
    here. queue_timeout / run_timeout are seconds (the job fails with DEADLINE_EXCEEDED past them).
    """
    request = pb.GenerateRequest(prompt=prompt, model=model or "", negative_prompt=negative_prompt or "",
                                 width=width or 0, height=height or 0, frames=frames or 0, fps=fps or 0,
                                 steps=steps or 0, priority=priority, fragment_frames=fragment_frames or 0,
                                 request_id=request_id or "", queue_timeout_seconds=queue_timeout or 0,
                                 run_timeout_seconds=run_timeout or 0)
    if guidance is not None:
        request.guidance = guidance
    if seed is not None:
        request.seed = seed
    if radial is not None:
        request.radial.CopyFrom(radial.to_proto())
    return request


def _is_loopback(target: str) -> bool:
    """Whether a gRPC target names this machine (loopback address, localhost or a Unix socket)."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme):]
            break
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    if target.startswith("["):
        host = target[1:].split("]", 1)[0]
    elif target.count(":") == 1:
        host = target.split(":", 1)[0]
    else:
        host = target
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RadialClient:
    """A connection to radial-scheduler's VideoService.

    Every method raises RadialError when the call fails (its `code` is the gRPC status code and its
    `message` the server's). Unary calls have a deadline of `timeout` seconds unless the call is
    given its own; event streams have none unless given one. Thread-safe: calls may be made from
    several threads at once. Close it (or use it as a context manager) to release the channel.

    Args:
        target: the scheduler's client address, "HOST:PORT" (any gRPC target string).
        token: sent as "authorization: Bearer <token>" on every call; needed when the scheduler has
            a tokens file. Visible ASCII, no spaces (anything else is a ValueError, without the token).
        tls_ca: PEM file of the CA that signed the scheduler's certificate: the connection uses TLS.
            None: plaintext. The file is read here (OSError if it cannot be; ValueError if it holds
            no certificate).
        tls_server_name: the name checked in the server's certificate instead of target's host.
        timeout: default deadline of the unary calls, in seconds.
        channel_options: extra gRPC channel arguments.
    """

    def __init__(self, target: str, token: str | None = None, tls_ca: str | os.PathLike[str] | None = None, *,
                 tls_server_name: str | None = None, timeout: float = 30.0,
                 channel_options: Sequence[tuple[str, Any]] = ()) -> None:
        if token is not None and (not token or any(not "!" <= c <= "~" for c in token)):
            raise ValueError("token: expected visible ASCII characters without spaces or line breaks")
        options = list(channel_options)
        if tls_ca is not None:
            pem = Path(tls_ca).read_bytes()
            if b"-----BEGIN CERTIFICATE-----" not in pem:
                raise ValueError(f"tls_ca: {os.fspath(tls_ca)} holds no PEM certificate")
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=pem), options)
        else:
            if tls_server_name:
                raise ValueError("tls_server_name: needs tls_ca (TLS)")
            if token is not None and not _is_loopback(target):
                warnings.warn(f"radial_client: sending a token without TLS to {target}: it can be read on the network",
                              RuntimeWarning, stacklevel=2)
            self._channel = grpc.insecure_channel(target, options)
        self._stub = pb_grpc.VideoServiceStub(self._channel)
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self.target = target

    # ------------------------------------------------------------------ connection

    def close(self) -> None:
        """Closes the channel; calls in flight end with CANCELLED."""
        self._channel.close()

    def __enter__(self) -> RadialClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Waits until the channel is connected; RadialError(UNAVAILABLE) after `timeout` seconds."""
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            ready.cancel()  # stops watching the channel's state
            raise RadialError(grpc.StatusCode.UNAVAILABLE,
                              f"no connection to {self.target} within {timeout:g} s") from None

    def _unary(self, method: Any, request: Any, timeout: float | None, job_id: str | None = None) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise RadialError.from_rpc(error, job_id=job_id) from error

    # ------------------------------------------------------------------ jobs

    def generate(self, prompt: str, out_path: str | os.PathLike[str], *, model: str | None = None,
                 negative_prompt: str | None = None, width: int | None = None, height: int | None = None,
                 frames: int | None = None, fps: int | None = None, steps: int | None = None,
                 guidance: float | None = None, seed: int | None = None, priority: int = 0,
                 radial: RadialOptions | None = None, fragment_frames: int | None = None,
                 request_id: str | None = None, queue_timeout: int | None = None, run_timeout: int | None = None,
                 progress: ProgressCallback | None = None, on_event: EventCallback | None = None,
                 timeout: float | None = None, reconnect_timeout: float = 60.0) -> pb.Job:
        """Submits a job, writes its MP4 to `out_path` as the chunks arrive and returns the ended Job.

        The bytes go into a temporary file next to `out_path` (created before the job is submitted,
        so an unwritable path costs no job), at each chunk's offset; a Restarted event empties it.
        When the job succeeds the file is renamed onto `out_path`; on any failure (the job failed or
        was cancelled, the call failed, a callback raised, KeyboardInterrupt) it is removed and
        nothing is left at `out_path`. The job itself keeps running when the call is interrupted:
        follow it again with download() or stop it with cancel().

        If the stream breaks with UNAVAILABLE after the job was accepted (the scheduler restarted, the
        network dropped), the client follows the job again with Watch from the bytes it holds, for
        up to `reconnect_timeout` seconds (0: never); the server restarts the stream from offset 0
        when the job ran again meanwhile.

        Request arguments: as build_request. `progress` gets every Progress event (stage, denoising
        step); `on_event` every event. `timeout`: deadline of the whole call in seconds (None: none).
        Raises RadialError: INVALID_ARGUMENT etc. when the request is refused, the job's code
        (e.g. DEADLINE_EXCEEDED, INTERNAL) when it failed, CANCELLED when it was cancelled.
        """
        request = build_request(prompt, model=model, negative_prompt=negative_prompt, width=width, height=height,
                                frames=frames, fps=fps, steps=steps, guidance=guidance, seed=seed, priority=priority,
                                radial=radial, fragment_frames=fragment_frames, request_id=request_id,
                                queue_timeout=queue_timeout, run_timeout=run_timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with VideoFile(out_path) as video:
            stream = self._stub.Generate(request, metadata=self._metadata, timeout=timeout)
            # A new job's bytes come from its first attempt until a Restarted event says otherwise.
            job_id = self._follow(video, stream, job_id=None, attempt=1, progress=progress, on_event=on_event,
                                  deadline=deadline, reconnect_timeout=reconnect_timeout)
            job: pb.Job = self._unary(self._stub.GetJob, pb.GetJobRequest(job_id=job_id), None, job_id)
            video.commit()
        return job

    def download(self, job_id: str, out_path: str | os.PathLike[str], *, progress: ProgressCallback | None = None,
                 on_event: EventCallback | None = None, timeout: float | None = None,
                 reconnect_timeout: float = 60.0) -> pb.Job:
        """Follows a job (submitted earlier, running or ended) and writes its whole MP4 to `out_path`,
        with the same guarantees as generate(): atomic rename on success, nothing left on failure,
        reconnection for `reconnect_timeout` seconds. Returns the ended Job; raises RadialError
        (NOT_FOUND for an unknown job, the job's code when it failed, CANCELLED)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with VideoFile(out_path) as video:
            current: pb.Job = self._unary(self._stub.GetJob, pb.GetJobRequest(job_id=job_id), timeout, job_id)
            # The bytes that come are from the job's current attempt (a queued job's first is 1).
            attempt = max(current.attempts, 1)
            stream = self._stub.Watch(pb.WatchRequest(job_id=job_id, from_byte_offset=0, attempt=attempt),
                                      metadata=self._metadata, timeout=self._remaining(deadline, job_id))
            self._follow(video, stream, job_id=job_id, attempt=attempt, progress=progress, on_event=on_event,
                         deadline=deadline, reconnect_timeout=reconnect_timeout)
            job: pb.Job = self._unary(self._stub.GetJob, pb.GetJobRequest(job_id=job_id), None, job_id)
            video.commit()
        return job

    def submit(self, prompt: str, *, model: str | None = None, negative_prompt: str | None = None,
               width: int | None = None, height: int | None = None, frames: int | None = None,
               fps: int | None = None, steps: int | None = None, guidance: float | None = None,
               seed: int | None = None, priority: int = 0, radial: RadialOptions | None = None,
               fragment_frames: int | None = None, request_id: str | None = None,
               queue_timeout: int | None = None, run_timeout: int | None = None,
               timeout: float | None = None) -> pb.Job:
        """Queues a job and returns it at once (id, queue position, the resolved request), once the
        scheduler has stored it. Request arguments: as build_request. Follow it with watch() or
        download(). With `request_id`, submitting the same key again returns the first job."""
        request = build_request(prompt, model=model, negative_prompt=negative_prompt, width=width, height=height,
                                frames=frames, fps=fps, steps=steps, guidance=guidance, seed=seed, priority=priority,
                                radial=radial, fragment_frames=fragment_frames, request_id=request_id,
                                queue_timeout=queue_timeout, run_timeout=run_timeout)
        job: pb.Job = self._unary(self._stub.Submit, request, timeout)
        return job

    def watch(self, job_id: str, from_offset: int = 0, *, attempt: int = 0,
              timeout: float | None = None) -> Iterator[JobEvent]:
        """Yields a job's events: a replay of what it already produced (chunks from byte `from_offset`
        on), then live events until it ends; the last event is Completed, Failed or Cancelled.

        `attempt`: the attempt (Job.attempts, Restarted.attempt) the caller's bytes before
        `from_offset` came from; when the job ran again since, the stream starts with Restarted and
        chunks from offset 0. 0: taken as the current attempt. Stopping the iteration (or closing
        the generator) cancels the stream, not the job. Raises RadialError while iterating:
        NOT_FOUND for an unknown job, OUT_OF_RANGE for an offset past the end of its video.
        """
        stream = self._stub.Watch(pb.WatchRequest(job_id=job_id, from_byte_offset=from_offset, attempt=attempt),
                                  metadata=self._metadata, timeout=timeout)
        try:
            for message in stream:
                event = event_from_proto(message)
                if event is not None:
                    yield event
        except grpc.RpcError as error:
            raise RadialError.from_rpc(error, job_id=job_id) from error
        finally:
            stream.cancel()

    def get(self, job_id: str, *, timeout: float | None = None) -> pb.Job:
        """The job as the scheduler has it now (state, progress, bytes produced, stats, error)."""
        job: pb.Job = self._unary(self._stub.GetJob, pb.GetJobRequest(job_id=job_id), timeout, job_id)
        return job

    def cancel(self, job_id: str, *, timeout: float | None = None) -> pb.Job:
        """Cancels a job: a queued one at once, a running one within one denoising step. Returns the
        job; FAILED_PRECONDITION when it had already ended."""
        job: pb.Job = self._unary(self._stub.CancelJob, pb.CancelJobRequest(job_id=job_id), timeout, job_id)
        return job

    def delete(self, job_id: str, *, timeout: float | None = None) -> pb.Job:
        """Removes a job and its video (cancelling it first if needed); returns it as it was."""
        job: pb.Job = self._unary(self._stub.DeleteJob, pb.DeleteJobRequest(job_id=job_id), timeout, job_id)
        return job

    def list_models(self, *, timeout: float | None = None) -> pb.ListModelsResponse:
        """The models workers serve (limits, resolved defaults, worker count) and the default model."""
        response: pb.ListModelsResponse = self._unary(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return response

    def list_jobs(self, *, states: Iterable[JobState | int] = (), model: str | None = None,
                  limit: int | None = None, timeout: float | None = None) -> list[pb.Job]:
        """Jobs the scheduler keeps (only the caller's tenant's, unless an admin), newest first,
        optionally only those in `states` or of `model`; at most `limit` (None: all, page by page)."""
        jobs: list[pb.Job] = []
        page_token = ""
        while limit is None or len(jobs) < limit:
            page_size = 1000 if limit is None else min(limit - len(jobs), 1000)
            request = pb.ListJobsRequest(states=cast("list[pb.JobState]", [int(s) for s in states]), model=model or "",
                                         page_size=page_size, page_token=page_token)
            response: pb.ListJobsResponse = self._unary(self._stub.ListJobs, request, timeout)
            jobs.extend(response.jobs)
            page_token = response.next_page_token
            if not page_token:
                break
        return jobs if limit is None else jobs[:limit]

    # ------------------------------------------------------------------ following a job into a file

    @staticmethod
    def _remaining(deadline: float | None, job_id: str | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise RadialError(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's timeout passed", job_id=job_id)
        return left

    def _follow(self, video: VideoFile, stream: Any, *, job_id: str | None, attempt: int,
                progress: ProgressCallback | None, on_event: EventCallback | None, deadline: float | None,
                reconnect_timeout: float) -> str:
        """Reads a Generate or Watch stream into `video` until the job ends; returns the job's id once
        it succeeded (the size checked against its stats), raises RadialError otherwise. `attempt` is
        the attempt `video`'s bytes are from, sent with the offset when following again."""
        broken_at: float | None = None  # when the stream broke; None while events arrive
        delay = _RECONNECT_DELAY_FIRST
        while True:
            try:
                try:
                    for message in stream:
                        event = event_from_proto(message)
                        if event is None:
                            continue  # a kind newer than this client
                        job_id = event.job_id or job_id
                        broken_at, delay = None, _RECONNECT_DELAY_FIRST
                        if isinstance(event, Chunk):
                            video.write(event.job_id, event.offset, event.data)
                        elif isinstance(event, Restarted):
                            video.truncate()
                            attempt = event.attempt
                        if on_event is not None:
                            on_event(event)
                        if progress is not None and isinstance(event, Progress):
                            progress(event)
                        if isinstance(event, Completed):
                            expected = event.stats.video_bytes
                            if expected and expected != video.size:
                                raise RadialError(grpc.StatusCode.DATA_LOSS,
                                                  f"received {video.size} bytes of a {expected}-byte video",
                                                  job_id=job_id)
                            return event.job_id
                        if isinstance(event, (Failed, Cancelled)):
                            raise RadialError(event.code, event.message, job_id=job_id)
                finally:
                    stream.cancel()  # no-op once the call has ended
                raise RadialError(grpc.StatusCode.UNKNOWN, "the stream ended without a result", job_id=job_id)
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                if broken_at is not None and code == grpc.StatusCode.DEADLINE_EXCEEDED and (
                        deadline is None or time.monotonic() < deadline):
                    raise RadialError(grpc.StatusCode.UNAVAILABLE, f"the stream broke and {self.target} could not be "
                                      f"reached again within {reconnect_timeout:g} s", job_id=job_id) from error
                if code != grpc.StatusCode.UNAVAILABLE or job_id is None or reconnect_timeout <= 0:
                    raise RadialError.from_rpc(error, job_id=job_id) from error
                now = time.monotonic()
                broken_at = now if broken_at is None else broken_at
                if now - broken_at + delay > reconnect_timeout:
                    raise RadialError.from_rpc(error, job_id=job_id) from error
                time.sleep(delay)
                delay = min(delay * 2, _RECONNECT_DELAY_MAX)
                # wait_for_ready: queue the call until the channel reconnects instead of failing fast.
                wait = reconnect_timeout - (time.monotonic() - broken_at)
                remaining = self._remaining(deadline, job_id)
                stream = self._stub.Watch(
                    pb.WatchRequest(job_id=job_id, from_byte_offset=video.size, attempt=attempt),
                    metadata=self._metadata, timeout=wait if remaining is None else min(wait, remaining),
                    wait_for_ready=True)
