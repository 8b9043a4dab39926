"""Sizes as the agent writes them: "12GiB", "512MiB", "2G", "1.5GB", 4096."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KiB": 1 << 10,
    "k": 1 << 10,
    "M": 1 << 20,
    "MiB": 1 << 20,
    "G": 1 << 30,
    "GiB": 1 << 30,
    "T": 1 << 40,
    "TiB": 1 << 40,
    "KB": 1000,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_size(size: int | str) -> int:
    """Bytes in `size`: an int, or a string with the agent's units (K, M,
    G, T and KiB... are powers of 1024; KB, MB, GB, TB of 1000)."""
    if isinstance(size, bool):
        raise TypeError("a size is a number of bytes or a string like '12GiB'")
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"size {size}: must be above 0")
        return size
    m = _SIZE.match(size)
    if not m:
        raise ValueError(f"`{size}` is not a size (expected e.g. 512MiB, 2G, 4096)")
    value, unit = m.groups()
    if unit not in _UNITS:
        raise ValueError(
            f"unknown size unit `{unit}` in `{size}` "
            "(use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB, TB)"
        )
    n = int(float(value) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"size `{size}`: must be above 0")
    return n
