"""Person-level split into fit, early-stopping, calibration/threshold and validation sets.

Each person lands in exactly one part, decided by a keyed hash of the person id: the split does
not depend on row order or on who else is in the data, and the same seed gives the same split.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

# Chosen on benchmarks/quality_bench.py's development worlds (docs/experiments/other-worlds.md, *Data efficiency*): the
# certificate's part is the largest after the trees', since with noisy labels its number of
# negatives decides how close to the target the threshold may go; early stopping needs few.
PARTS: dict[str, float] = {
    "fit": 0.50,
    "early_stop": 0.05,
    "calibration": 0.30,
    "validation": 0.15,
}


def unit_hash(ids: pd.Series, seed: int) -> np.ndarray:
    """A number in [0, 1) per id, uniform and stable for a given seed."""
    key = seed.to_bytes(8, "little", signed=True)
    blake = hashlib.blake2b
    # The digests joined and read as little-endian uint64 at once: the same numbers as one
    # int.from_bytes(...) / 2**64 per id (a power of two divides exactly), 3x faster at 1M ids.
    raw = b"".join([blake(i.encode(), digest_size=8, key=key).digest() for i in ids.astype(str)])
    return np.frombuffer(raw, dtype="<u8") / 2**64


def assign(ids: pd.Series, seed: int, parts: dict[str, float] = PARTS) -> pd.Series:
    """The part name for each id."""
    edges = np.cumsum(list(parts.values()))
    edges[-1] = 1.0
    index = np.searchsorted(edges, unit_hash(ids, seed), side="right")
    return pd.Series(np.array(list(parts))[index], index=ids.index, dtype="str")
