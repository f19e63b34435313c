"""Typed job events: what Generate and Watch stream (radial.v1.JobEvent), one dataclass per kind."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc

from ._proto import video_service_pb2 as pb
from .errors import status_code


class JobState(enum.IntEnum):
    """radial.v1.JobState; compares equal to the API's numbers (Job.state)."""

    UNSPECIFIED = pb.JOB_STATE_UNSPECIFIED
    QUEUED = pb.JOB_STATE_QUEUED
    RUNNING = pb.JOB_STATE_RUNNING
    SUCCEEDED = pb.JOB_STATE_SUCCEEDED
    FAILED = pb.JOB_STATE_FAILED
    CANCELLED = pb.JOB_STATE_CANCELLED


class Stage(enum.IntEnum):
    """radial.v1.Stage: where a job is; stages only move forward within one attempt."""

    UNSPECIFIED = pb.STAGE_UNSPECIFIED
    QUEUED = pb.STAGE_QUEUED
    ENCODING_TEXT = pb.STAGE_ENCODING_TEXT
    DENOISING = pb.STAGE_DENOISING
    DECODING = pb.STAGE_DECODING
    MUXING = pb.STAGE_MUXING


@dataclass(frozen=True, slots=True)
class Accepted:
    """The job is stored and queued; `request` has every default resolved (sizes, steps, seed...)."""

    job_id: str
    queue_position: int
    request: pb.GenerateRequest


@dataclass(frozen=True, slots=True)
class Progress:
    """The job's progress: its `stage` and, while denoising, the step of `total` just finished (later
    stages may count frames the same way; otherwise 0/0). Stages only move forward within an attempt,
    and counts rise; a watcher is sent the latest progress, so a slow one may skip some."""

    job_id: str
    stage: Stage
    step: int
    total: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """MP4 bytes: `data` belongs at byte `offset` of the video (chunks arrive in order)."""

    job_id: str
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Restarted:
    """The job's worker was lost and the job runs again as `attempt`: drop the bytes received so far,
    chunks start again at offset 0."""

    job_id: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Completed:
    """The job succeeded; the stream ends after this. `stats` has the stage times and video size."""

    job_id: str
    stats: pb.JobStats


@dataclass(frozen=True, slots=True)
class Failed:
    """The job failed with `code` (e.g. DEADLINE_EXCEEDED, INTERNAL) and the server's message."""

    job_id: str
    code: grpc.StatusCode
    message: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The job was cancelled (CancelJob, or DeleteJob of a running job)."""

    job_id: str
    code: grpc.StatusCode
    message: str


JobEvent = Accepted | Progress | Chunk | Restarted | Completed | Failed | Cancelled
"""One event of a job's stream. Completed, Failed and Cancelled are the last one."""


def _stage(number: int) -> Stage:
    try:
        return Stage(number)
    except ValueError:  # a stage newer than this client
        return Stage.UNSPECIFIED


def event_from_proto(message: pb.JobEvent) -> JobEvent | None:
    """The typed event of a radial.v1.JobEvent; None for a kind newer than this client."""
    job_id = message.job_id
    kind = message.WhichOneof("event")
    if kind == "accepted":
        return Accepted(job_id, message.accepted.queue_position, message.accepted.request)
    if kind == "progress":
        p = message.progress
        return Progress(job_id, _stage(p.stage), p.step, p.total)
    if kind == "chunk":
        return Chunk(job_id, message.chunk.offset, message.chunk.data)
    if kind == "restarted":
        return Restarted(job_id, message.restarted.attempt, message.restarted.reason)
    if kind == "completed":
        return Completed(job_id, message.completed.stats)
    if kind == "failed":
        return Failed(job_id, status_code(message.failed.code), message.failed.message)
    if kind == "cancelled":
        # An Error without a code (0) on a cancellation still means CANCELLED.
        code = status_code(message.cancelled.code) if message.cancelled.code else grpc.StatusCode.CANCELLED
        return Cancelled(job_id, code, message.cancelled.message)
    return None
