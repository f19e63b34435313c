"""RadialError: every failure the service reports, as a gRPC status code and the server's message."""

from __future__ import annotations

import grpc

_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a google.rpc.Code number (as in the API's Error.code); UNKNOWN if none."""
    return _CODES_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


class RadialError(Exception):
    """A call the server refused or that could not be made, or a job that failed or was cancelled.

    Attributes:
        code: the gRPC status code, e.g. grpc.StatusCode.INVALID_ARGUMENT for a request outside the
            model's limits, NOT_FOUND for an unknown job, UNAUTHENTICATED without a valid token,
            UNAVAILABLE when the server cannot be reached, CANCELLED for a cancelled job.
        message: the server's message as sent (for INVALID_ARGUMENT it starts with the field's name,
            e.g. "width: got 100, expected a multiple of 16 in [64, 256]").
        job_id: the job the error is about, when there is one (a failed or cancelled job, or a stream
            that broke after the job was accepted); None otherwise.
    """

    def __init__(self, code: grpc.StatusCode, message: str, *, job_id: str | None = None) -> None:
        self.code = code
        self.message = message
        self.job_id = job_id
        text = f"{code.name}: {message}"
        if job_id:
            text = f"job {job_id}: {text}"
        super().__init__(text)

    @classmethod
    def from_rpc(cls, error: grpc.RpcError, *, job_id: str | None = None) -> RadialError:
        """The error of a failed call (a grpc.RpcError that is also a grpc.Call)."""
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = error.details() if isinstance(error, grpc.Call) else None
        return cls(code, details or str(error), job_id=job_id)
