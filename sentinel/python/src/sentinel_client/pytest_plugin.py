"""pytest plugin: memory reserved for a test before it runs, in each xdist
worker, through the Sentinel agent's admission control.

    @pytest.mark.sentinel_reserve("12GiB")
    def test_big_build(): ...

Each marked test waits (up to `--sentinel-wait`) until the agent can give
it that much, holds it through setup, the test and teardown, and gives it
back. With 24 xdist workers, as many run at once as fit, instead of all of
them (and the OOM killer) or one at a time (a file lock). For a fixture,
take the `sentinel` fixture (a `Client`) and reserve in it:
`with sentinel.reserve("4GiB"): yield build()`.

Options (command line, or the same names in pytest.ini without the
dashes): --sentinel-socket, --sentinel-priority (normal), --sentinel-wait
(seconds, 3600), --sentinel-scope (host or cgroup), --sentinel-required
(without an agent, fail instead of warning and running unreserved).
"""

from __future__ import annotations

import warnings

import pytest

from . import errors
from .client import Client

_STATE = pytest.StashKey[object]()
_HELD = pytest.StashKey[object]()


def pytest_addoption(parser):
    group = parser.getgroup("sentinel", "memory reservations (Sentinel agent)")

    def add(name, help, **kw):
        group.addoption(f"--{name}", dest=name.replace("-", "_"), help=help, **kw)
        parser.addini(name.replace("-", "_"), help=help, default=None)

    add("sentinel-socket", "the agent's socket (default: SENTINEL_SOCKET or /run/sentinel/sentinel.sock)")
    add("sentinel-priority", "priority of the reservations: background, low, normal, high, critical")
    add("sentinel-wait", "seconds a test may wait for its memory (default 3600)")
    add("sentinel-scope", "host (default) or cgroup: the pool reservations come from")
    group.addoption(
        "--sentinel-required",
        dest="sentinel_required",
        action="store_true",
        default=None,
        help="fail marked tests when no agent answers (default: warn and run them unreserved)",
    )
    parser.addini("sentinel_required", "as --sentinel-required", type="bool", default=False)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "sentinel_reserve(size, priority=None, wait=None, scope=None): reserve "
        "memory (e.g. '12GiB') through the Sentinel agent before the test runs",
    )


def _opt(config, name, default):
    value = config.getoption(name)
    if value is None:
        value = config.getini(name)
    return default if value in (None, "") else value


class _State:
    def __init__(self, config):
        self.config = config
        self.client = None
        self.warned = False

    def get_client(self):
        if self.client is None:
            self.client = Client(_opt(self.config, "sentinel_socket", None) or None)
        return self.client


def _state(config) -> _State:
    if _STATE not in config.stash:
        config.stash[_STATE] = _State(config)
    return config.stash[_STATE]


@pytest.fixture(scope="session")
def sentinel(request) -> Client:
    """A client of the agent, for fixtures that reserve memory themselves."""
    return _state(request.config).get_client()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before any fixture is set up: the memory is there for them too.
    mark = item.get_closest_marker("sentinel_reserve")
    if mark is not None:
        _take(item, mark)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    # After every fixture is torn down, even when a teardown fails.
    try:
        return (yield)
    finally:
        held = item.stash.get(_HELD, None)
        if held is not None:
            del item.stash[_HELD]
            held.__exit__(None, None, None)


def _take(item, mark):
    config = item.config
    state = _state(config)
    if not mark.args:
        raise pytest.UsageError(
            f"{item.nodeid}: sentinel_reserve needs a size, e.g. sentinel_reserve('12GiB')"
        )
    size = mark.args[0]
    reservation = state.get_client().reserve(
        size,
        priority=mark.kwargs.get("priority") or _opt(config, "sentinel_priority", "normal"),
        wait=float(mark.kwargs.get("wait") or _opt(config, "sentinel_wait", 3600)),
        scope=mark.kwargs.get("scope") or _opt(config, "sentinel_scope", "host"),
        holder=f"pytest {item.nodeid}"[:4096],
    )
    required = _opt(config, "sentinel_required", False)
    try:
        reservation.__enter__()
    except errors.NoAgent as e:
        if required:
            pytest.fail(f"sentinel_reserve({size!r}): {e} (--sentinel-required)", pytrace=False)
        if not state.warned:
            state.warned = True
            warnings.warn(
                f"no Sentinel agent: tests marked sentinel_reserve run unreserved ({e})",
                pytest.PytestWarning,
            )
        return
    except errors.NotAdmitted as e:
        pytest.fail(f"sentinel_reserve({size!r}) not admitted in time: {e}", pytrace=False)
    except errors.SentinelError as e:
        pytest.fail(f"sentinel_reserve({size!r}): {e}", pytrace=False)
    item.stash[_HELD] = reservation
