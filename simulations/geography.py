"""Where nodes and clients are, and the round trip between them.

Points lie on a sphere, clustered around a few regions (continents); the round trip between
two points grows with their great-circle distance from ``MIN_RTT_MS`` (same place) to
``MAX_RTT_MS`` (antipodes), the 20-100 ms of a WAN.
"""

from __future__ import annotations

import math
import random

__all__ = ["MAX_RTT_MS", "MIN_RTT_MS", "Place", "place", "rtt_ms"]

MIN_RTT_MS = 20.0
MAX_RTT_MS = 100.0
Place = tuple[float, float, float]  # a unit vector

_REGIONS: tuple[tuple[float, float], ...] = (  # (latitude, longitude) in degrees
    (48.0, 10.0), (40.0, -90.0), (35.0, 120.0), (-25.0, 135.0), (-15.0, -55.0), (20.0, 78.0))
_SPREAD_DEGREES = 12.0


def _unit(latitude: float, longitude: float) -> Place:
    lat, lon = math.radians(latitude), math.radians(longitude)
    return (math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat))


def place(rng: random.Random) -> Place:
    """A random point near one of the regions."""
    latitude, longitude = _REGIONS[rng.randrange(len(_REGIONS))]
    return _unit(max(-89.0, min(89.0, latitude + rng.gauss(0.0, _SPREAD_DEGREES))),
                 longitude + rng.gauss(0.0, _SPREAD_DEGREES))


def rtt_ms(a: Place, b: Place) -> float:
    """The round trip between two points."""
    dot = max(-1.0, min(1.0, a[0] * b[0] + a[1] * b[1] + a[2] * b[2]))
    return MIN_RTT_MS + (MAX_RTT_MS - MIN_RTT_MS) * math.acos(dot) / math.pi
