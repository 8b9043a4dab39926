"""Python client of the Sentinel memory agent.

    from sentinel_client import Client
    with Client() as c, c.reserve("12GiB", wait=600):
        build()

See `Client`, `AsyncClient`, and the pytest plugin (`sentinel_reserve`).
"""

from ._sizes import parse_size
from .aio import AsyncClient, AsyncReservation
from .client import DEFAULT_SOCKET, Client, Reservation, default_target
from .errors import (
    InvalidRequest,
    NoAgent,
    NotAdmitted,
    PermissionDenied,
    SentinelError,
)

__all__ = [
    "AsyncClient",
    "AsyncReservation",
    "Client",
    "DEFAULT_SOCKET",
    "InvalidRequest",
    "NoAgent",
    "NotAdmitted",
    "PermissionDenied",
    "Reservation",
    "SentinelError",
    "default_target",
    "parse_size",
]
