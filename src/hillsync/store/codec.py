"""Compact storage of elevation profiles: float32 samples, zlib-compressed.

A 42 km run at 10 m is 4,200 samples: about 17 kB raw, a few kB compressed. float32 keeps
altitude to well under a centimetre, far finer than any device measures.
"""

from __future__ import annotations

import struct
import zlib

from hillsync.errors import StoreError
from hillsync.model import Profile

_MAGIC = b"HP1"
_HEADER = struct.Struct("<3sf")


def encode_profile(p: Profile) -> bytes:
    """The profile as bytes: a small header with the step, then float32 altitudes, zlib'ed."""
    import numpy as np  # here, not at the top: commands that read no profile skip numpy

    samples = np.asarray(p.altitude_m, dtype="<f4").tobytes()
    return _HEADER.pack(_MAGIC, p.step_m) + zlib.compress(samples, 6)


def decode_profile(blob: bytes, distance_m: float) -> Profile:
    """The profile stored by `encode_profile`, ending at `distance_m`.

    Raises StoreError when the blob is not a stored profile (truncated or foreign bytes).
    """
    if len(blob) < _HEADER.size:
        raise StoreError("stored profile is truncated")
    magic, step = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise StoreError("stored profile has an unknown format")
    try:
        raw = zlib.decompress(blob[_HEADER.size :])
    except zlib.error as exc:
        raise StoreError(f"stored profile is corrupt: {exc}") from None
    if len(raw) % 4:
        raise StoreError("stored profile is corrupt: partial sample")
    import numpy as np

    altitude = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    return Profile(altitude_m=altitude, distance_m=float(distance_m), step_m=float(step))
