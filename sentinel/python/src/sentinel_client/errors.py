"""What can go wrong, as exceptions a caller can act on."""

from __future__ import annotations

from typing import Optional

import grpc


class SentinelError(Exception):
    """Any error from the agent; `code` is the gRPC status code."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.code = code


class NoAgent(SentinelError):
    """No agent answers on the socket (or address): is `sentinel run` up?"""


class PermissionDenied(SentinelError):
    """The agent refused the caller: not in the socket's group, or not an
    admin for what was asked."""


class NotAdmitted(SentinelError):
    """A reservation was not granted within its wait. `retry_after` (seconds)
    is the agent's estimate when the queue was full, else None."""

    def __init__(self, message: str, code=None, retry_after: Optional[float] = None):
        super().__init__(message, code)
        self.retry_after = retry_after


class InvalidRequest(SentinelError):
    """The agent refused the request's content (the message names the field)."""


def from_rpc(err: grpc.RpcError, target: str) -> SentinelError:
    """The exception for a failed call."""
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else None) or str(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return NoAgent(
            f"no Sentinel agent answers at {target} ({details}); start one with `sentinel run`",
            code,
        )
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return PermissionDenied(details, code)
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED):
        retry = None
        meta = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
        for key, value in meta or ():
            if key == "retry-after":
                try:
                    retry = float(value)
                except ValueError:
                    pass
        return NotAdmitted(details, code, retry)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return InvalidRequest(details, code)
    return SentinelError(details, code)
