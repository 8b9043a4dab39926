"""The blocking client: one channel to one agent."""

from __future__ import annotations

import functools
import os
import time
from typing import Callable, Iterator, Optional, Sequence, Tuple, TypeVar

import grpc

from . import errors
from ._gen.sentinel.v1 import sentinel_pb2 as pb
from ._gen.sentinel.v1 import sentinel_pb2_grpc as rpc
from ._sizes import parse_size

DEFAULT_SOCKET = "/run/sentinel/sentinel.sock"

F = TypeVar("F", bound=Callable)


def default_target() -> str:
    """`SENTINEL_SOCKET` if set, else the agent's default socket."""
    return os.environ.get("SENTINEL_SOCKET", DEFAULT_SOCKET)


def reserve_request(
    size: int | str,
    priority: str,
    wait: float,
    scope: str,
    holder: str,
    ttl: float,
    pid: int,
) -> pb.ReserveRequest:
    """A Reserve request, the size in the agent's units."""
    return pb.ReserveRequest(
        bytes=parse_size(size),
        priority=priority,
        wait_seconds=float(wait),
        scope=scope,
        holder=holder,
        ttl_seconds=float(ttl),
        pid=pid,
    )


def processes_request(
    limit: int, sort: str, comm: str, cgroup_prefix: str, rule: str, matched_only: bool
) -> pb.ListProcessesRequest:
    return pb.ListProcessesRequest(
        limit=limit,
        sort=sort,
        comm=comm,
        cgroup_prefix=cgroup_prefix,
        rule=rule,
        matched_only=matched_only,
    )


class Outage:
    """A followed stream's lost connection: tried again (after `RETRY`
    seconds) while the agent has been away under `limit` seconds; any other
    error, or a longer absence, is raised."""

    RETRY = 0.2

    def __init__(self, limit: float, target: str):
        self.limit = limit
        self.target = target
        self.since: Optional[float] = None

    def ended(self) -> None:
        """A decision arrived: the agent is back."""
        self.since = None

    def check(self, err: grpc.RpcError) -> None:
        """Raises unless the stream should be resumed."""
        if err.code() != grpc.StatusCode.UNAVAILABLE:
            raise errors.from_rpc(err, self.target) from None
        self.since = self.since or time.monotonic()
        if time.monotonic() - self.since > self.limit:
            raise errors.from_rpc(err, self.target) from None


def _channel(
    target: str,
    tls: Optional[Tuple[bytes, bytes, bytes]],
    secure: Callable,
    insecure: Callable,
):
    """A channel to a Unix socket (a path, or `unix:PATH`), or to the
    mutual-TLS listener (`HOST:PORT` with `tls` = (client cert, client key,
    CA), PEM bytes). Over a Unix socket grpc-core would send the socket's
    path as the HTTP/2 authority, which the agent's server refuses: the
    authority is set to `localhost`."""
    if tls is not None:
        cert, key, ca = tls
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        return secure(target, creds)
    path = target[len("unix:") :] if target.startswith("unix:") else target
    return insecure(
        f"unix:{path}", options=[("grpc.default_authority", "localhost")]
    )


class Client:
    """A connection to the agent. `target`: a socket path (default:
    `SENTINEL_SOCKET` or /run/sentinel/sentinel.sock), or `HOST:PORT` of
    the mutual-TLS listener with `tls` = (cert, key, ca) PEM bytes."""

    def __init__(
        self,
        target: Optional[str] = None,
        tls: Optional[Tuple[bytes, bytes, bytes]] = None,
        timeout: float = 10.0,
    ):
        self.target = target or default_target()
        self.timeout = timeout
        self._channel = _channel(
            self.target, tls, grpc.secure_channel, grpc.insecure_channel
        )
        self._sentinel = rpc.SentinelStub(self._channel)
        self._admission = rpc.AdmissionStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, timeout: Optional[float] = None):
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc(e, self.target) from None

    def status(self) -> pb.Status:
        """The agent's status: mode, probes, levels, reservations."""
        return self._call(self._sentinel.GetStatus, pb.GetStatusRequest())

    def processes(
        self,
        limit: int = 20,
        sort: str = "",
        comm: str = "",
        cgroup_prefix: str = "",
        rule: str = "",
        matched_only: bool = False,
    ) -> Sequence[pb.Process]:
        """Tracked processes, fastest growers first (or by `sort`)."""
        req = processes_request(limit, sort, comm, cgroup_prefix, rule, matched_only)
        return self._call(self._sentinel.ListProcesses, req).processes

    def decisions(
        self,
        after_seq: int = 0,
        follow: bool = False,
        kind: str = "",
        action: str = "",
        reconnect_for: float = 60.0,
    ) -> Iterator[pb.Decision]:
        """Decisions after `after_seq`, oldest first. With `follow`, then
        live ones as they are made, for as long as the caller iterates: a
        lost connection (an agent restart) is resumed from the last
        decision seen, with nothing skipped or repeated, for up to
        `reconnect_for` seconds of trying."""
        if not follow:
            while True:
                page = self._call(
                    self._sentinel.ListDecisions,
                    pb.ListDecisionsRequest(
                        after_seq=after_seq, limit=1000, kind=kind, action=action
                    ),
                ).decisions
                yield from page
                if len(page) < 1000:
                    return
                after_seq = page[-1].seq
        last = after_seq
        outage = Outage(reconnect_for, self.target)
        while True:
            try:
                stream = self._sentinel.WatchDecisions(
                    pb.WatchDecisionsRequest(after_seq=last)
                )
                for d in stream:
                    outage.ended()
                    last = d.seq
                    if (not kind or d.kind == kind) and (not action or d.action == action):
                        yield d
                return
            except grpc.RpcError as e:
                outage.check(e)
                time.sleep(Outage.RETRY)

    def reserve(
        self,
        size: int | str,
        priority: str = "normal",
        wait: float = 0.0,
        scope: str = "host",
        holder: str = "",
        ttl: float = 0.0,
        pid: int = 0,
    ) -> "Reservation":
        """A reservation of `size` for the calling process's tree (or
        `pid`'s), taken when its block is entered (or its decorated
        function called), waiting up to `wait` seconds in the queue, and
        released when the block is left, exception or not; the agent also
        releases it when the process exits. `scope`: "host" or "cgroup"
        (the process's memory cgroup). Raises NotAdmitted when not granted
        in time."""
        req = reserve_request(size, priority, wait, scope, holder, ttl, pid)
        return Reservation(self, req)

    def _reserve(self, req: pb.ReserveRequest) -> pb.Reservation:
        return self._call(
            self._admission.Reserve, req, timeout=req.wait_seconds + self.timeout
        )

    def _release(self, rid: int) -> None:
        self._call(self._admission.Release, pb.ReleaseRequest(id=rid))


class Reservation:
    """Held from entering the block to leaving it; reusable as a decorator
    (each call takes and releases its own)."""

    def __init__(self, client: Client, request: pb.ReserveRequest):
        self._client = client
        self._request = request
        self.granted: Optional[pb.Reservation] = None

    def __enter__(self) -> pb.Reservation:
        self.granted = self._client._reserve(self._request)
        return self.granted

    def __exit__(self, *exc) -> None:
        granted, self.granted = self.granted, None
        if granted is not None:
            try:
                self._client._release(granted.id)
            except errors.SentinelError:
                # Released by the agent already (it expired, or the agent
                # restarted): nothing is held back any more either way.
                pass

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def held(*args, **kwargs):
            with Reservation(self._client, self._request):
                return fn(*args, **kwargs)

        return held  # type: ignore[return-value]
