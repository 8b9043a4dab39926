"""The client against a fake agent (an in-process gRPC server on a Unix
socket): errors, release on exception, and a decision stream that resumes
across a restart of the agent."""

import os
import tempfile
import threading
from concurrent import futures

import grpc
import pytest

import sentinel_client as sc
from sentinel_client._gen.sentinel.v1 import sentinel_pb2 as pb
from sentinel_client._gen.sentinel.v1 import sentinel_pb2_grpc as rpc


class FakeAdmission(rpc.AdmissionServicer):
    def __init__(self):
        self.reserved = []
        self.released = []
        self.refuse = None

    def Reserve(self, request, context):
        if self.refuse:
            code, text, meta = self.refuse
            if meta:
                context.set_trailing_metadata(meta)
            context.abort(code, text)
        self.reserved.append(request)
        return pb.Reservation(id=len(self.reserved), bytes=request.bytes, state="granted")

    def Release(self, request, context):
        self.released.append(request.id)
        return pb.ReleaseResponse()


class FakeSentinel(rpc.SentinelServicer):
    def __init__(self, decisions, stop_after=None):
        self.decisions = decisions
        self.stop_after = stop_after
        self.asked_after = []

    def GetStatus(self, request, context):
        return pb.Status(mode="ebpf", version="fake")

    def ListProcesses(self, request, context):
        procs = [pb.Process(pid=p, comm=f"p{p}") for p in range(1, 100)]
        return pb.ListProcessesResponse(processes=procs[: request.limit])

    def WatchDecisions(self, request, context):
        after = request.after_seq if request.HasField("after_seq") else 0
        self.asked_after.append(after)
        for d in self.decisions:
            if d.seq > after:
                yield d
                if self.stop_after is not None and d.seq == self.stop_after:
                    self.stop_after = None
                    context.abort(grpc.StatusCode.UNAVAILABLE, "agent restarting")


@pytest.fixture
def agent():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "s.sock")
    servers = []

    def start(admission, sentinel):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        rpc.add_AdmissionServicer_to_server(admission, server)
        rpc.add_SentinelServicer_to_server(sentinel, server)
        server.add_insecure_port(f"unix:{path}")
        server.start()
        servers.append(server)
        return server

    yield path, start
    for s in servers:
        s.stop(0)


def test_sizes_are_the_agents():
    assert sc.parse_size("12GiB") == 12 << 30
    assert sc.parse_size("1.5G") == int(1.5 * (1 << 30))
    assert sc.parse_size("2GB") == 2_000_000_000
    with pytest.raises(ValueError, match="unknown size unit `XB`"):
        sc.parse_size("3XB")
    with pytest.raises(ValueError, match="above 0"):
        sc.parse_size(0)


def test_no_agent_is_said_plainly():
    with sc.Client("/nonexistent/sentinel.sock", timeout=2) as c:
        with pytest.raises(sc.NoAgent, match="sentinel run"):
            c.status()


def test_a_reservation_is_released_when_its_block_raises(agent):
    path, start = agent
    adm = FakeAdmission()
    start(adm, FakeSentinel([]))
    with sc.Client(path) as c:
        assert len(c.processes(limit=5)) == 5
        with pytest.raises(RuntimeError):
            with c.reserve("1GiB", priority="high", wait=5) as r:
                assert r.state == "granted"
                raise RuntimeError("the job failed")
        assert adm.reserved[0].bytes == 1 << 30
        assert adm.reserved[0].priority == "high"
        assert adm.reserved[0].wait_seconds == 5
        assert adm.released == [1]

        @c.reserve("2GiB")
        def job(x):
            assert len(adm.released) == 1, "held while it runs"
            return x * 2

        assert job(21) == 42
        assert adm.released == [1, 2]


def test_not_admitted_carries_the_retry_after(agent):
    path, start = agent
    adm = FakeAdmission()
    adm.refuse = (grpc.StatusCode.RESOURCE_EXHAUSTED, "the admission queue is full", (("retry-after", "30"),))
    start(adm, FakeSentinel([]))
    with sc.Client(path) as c:
        with pytest.raises(sc.NotAdmitted) as e:
            with c.reserve("1GiB"):
                pass
        assert e.value.retry_after == 30.0
        assert adm.released == []
        adm.refuse = (grpc.StatusCode.PERMISSION_DENIED, "needs uid 0", None)
        with pytest.raises(sc.PermissionDenied, match="needs uid 0"):
            with c.reserve("1GiB", pid=1):
                pass


def test_a_followed_stream_resumes_after_the_last_decision_seen(agent):
    path, start = agent
    ds = [pb.Decision(seq=n, action="freeze") for n in range(1, 6)]
    fake = FakeSentinel(ds, stop_after=2)
    start(FakeAdmission(), fake)
    seen = []
    with sc.Client(path) as c:
        for d in c.decisions(follow=True):
            seen.append(d.seq)
            if d.seq == 5:
                break
    assert seen == [1, 2, 3, 4, 5], "nothing skipped, nothing repeated"
    assert fake.asked_after == [0, 2]


def test_the_async_client_reserves_and_releases(agent):
    import asyncio

    path, start = agent
    adm = FakeAdmission()
    start(adm, FakeSentinel([]))

    async def main():
        async with sc.AsyncClient(path) as c:
            assert (await c.status()).mode == "ebpf"
            assert [p.pid for p in await c.processes(limit=3)] == [1, 2, 3]
            async with c.reserve("512MiB") as r:
                assert r.bytes == 512 << 20
            assert adm.released == [1]

    asyncio.run(main())
