"""The split's per-id number is the keyed BLAKE2b definition, whatever way it is computed
(models/core/split.py `unit_hash` reads all digests at once, issue 28 item 6): on any ids and seed
it equals int.from_bytes(digest, "little") / 2**64 per id, so every part a person falls in stays."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from commuter_badge.models.core.split import assign, unit_hash


def one_by_one(ids: list[str], seed: int) -> np.ndarray:
    key = seed.to_bytes(8, "little", signed=True)
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, key=key).digest(), "little")
            / 2**64
            for i in ids
        ],
        dtype="float64",
    )


@given(
    st.lists(st.text(min_size=0, max_size=24), max_size=60),
    st.integers(-(2**63), 2**63 - 1),
)
def test_unit_hash_equals_the_per_id_definition(ids, seed):
    got = unit_hash(pd.Series(ids, dtype="str"), seed)
    assert got.dtype == np.float64
    assert got.shape == (len(ids),)
    assert np.array_equal(got, one_by_one(ids, seed))
    assert ((got >= 0) & (got <= 1)).all()


def test_assign_keeps_the_index_and_gives_every_part_its_share():
    ids = pd.Series([f"p{i}" for i in range(20_000)], index=range(5, 20_005), dtype="str")
    parts = assign(ids, 3)
    assert parts.index.equals(ids.index)
    shares = parts.value_counts(normalize=True)
    for name, share in {"fit": 0.5, "early_stop": 0.05, "calibration": 0.3}.items():
        assert abs(shares[name] - share) < 0.015, shares
