"""The asyncio client: the same operations, awaited."""

from __future__ import annotations

import asyncio
import functools
from typing import AsyncIterator, Callable, Optional, Tuple

import grpc
import grpc.aio

from . import errors
from ._gen.sentinel.v1 import sentinel_pb2 as pb
from ._gen.sentinel.v1 import sentinel_pb2_grpc as rpc
from .client import Outage, _channel, default_target, processes_request, reserve_request


class AsyncClient:
    """`Client`, for asyncio code (a gateway, an orchestrator)."""

    def __init__(
        self,
        target: Optional[str] = None,
        tls: Optional[Tuple[bytes, bytes, bytes]] = None,
        timeout: float = 10.0,
    ):
        self.target = target or default_target()
        self.timeout = timeout
        self._channel = _channel(
            self.target, tls, grpc.aio.secure_channel, grpc.aio.insecure_channel
        )
        self._sentinel = rpc.SentinelStub(self._channel)
        self._admission = rpc.AdmissionStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _call(self, method, request, timeout: Optional[float] = None):
        try:
            return await method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc(e, self.target) from None

    async def status(self) -> pb.Status:
        return await self._call(self._sentinel.GetStatus, pb.GetStatusRequest())

    async def processes(
        self,
        limit: int = 20,
        sort: str = "",
        comm: str = "",
        cgroup_prefix: str = "",
        rule: str = "",
        matched_only: bool = False,
    ):
        """As `Client.processes`."""
        req = processes_request(limit, sort, comm, cgroup_prefix, rule, matched_only)
        return (await self._call(self._sentinel.ListProcesses, req)).processes

    async def decisions(
        self, after_seq: int = 0, reconnect_for: float = 60.0
    ) -> AsyncIterator[pb.Decision]:
        """Decisions after `after_seq`, then live ones, resumed across lost
        connections from the last one seen."""
        last = after_seq
        outage = Outage(reconnect_for, self.target)
        while True:
            try:
                async for d in self._sentinel.WatchDecisions(
                    pb.WatchDecisionsRequest(after_seq=last)
                ):
                    outage.ended()
                    last = d.seq
                    yield d
                return
            except grpc.RpcError as e:
                outage.check(e)
                await asyncio.sleep(Outage.RETRY)

    def reserve(
        self,
        size: int | str,
        priority: str = "normal",
        wait: float = 0.0,
        scope: str = "host",
        holder: str = "",
        ttl: float = 0.0,
        pid: int = 0,
    ) -> "AsyncReservation":
        """As `Client.reserve`, with `async with` (or as a decorator of a
        coroutine function)."""
        req = reserve_request(size, priority, wait, scope, holder, ttl, pid)
        return AsyncReservation(self, req)


class AsyncReservation:
    def __init__(self, client: AsyncClient, request: pb.ReserveRequest):
        self._client = client
        self._request = request
        self.granted: Optional[pb.Reservation] = None

    async def __aenter__(self) -> pb.Reservation:
        c = self._client
        self.granted = await c._call(
            c._admission.Reserve,
            self._request,
            timeout=self._request.wait_seconds + c.timeout,
        )
        return self.granted

    async def __aexit__(self, *exc) -> None:
        granted, self.granted = self.granted, None
        if granted is not None:
            try:
                await self._client._call(
                    self._client._admission.Release, pb.ReleaseRequest(id=granted.id)
                )
            except errors.SentinelError:
                pass

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def held(*args, **kwargs):
            async with AsyncReservation(self._client, self._request):
                return await fn(*args, **kwargs)

        return held
