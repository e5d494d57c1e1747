"""A run's training dataset is logged with MLflow's own digest and schema, computed faster
(models/mlflow_edge/registry.py `dataset`, `pandas_digest`, `pandas_schema`): on any frame of the
column kinds a labelled table holds, the logged record equals the one `mlflow.data.from_pandas`
makes by itself, cell by cell (issue 28, item 6: identical results)."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from commuter_badge.models.mlflow_edge import registry

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=64), st.just(math.nan))
TEXT = st.text(alphabet="abcxyz0189_-", max_size=6)


@st.composite
def frames(draw) -> pd.DataFrame:
    n = draw(st.integers(0, 30))
    kinds = draw(
        st.lists(
            st.sampled_from(["float", "int", "bool", "str", "str_or_none", "mixed"]),
            min_size=1,
            max_size=6,
        )
    )
    columns = {}
    for i, kind in enumerate(kinds):
        if kind == "float":
            values = draw(st.lists(FLOATS, min_size=n, max_size=n))
            columns[f"c{i}"] = pd.Series(values, dtype="float64")
        elif kind == "int":
            columns[f"c{i}"] = pd.Series(draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)))
        elif kind == "bool":
            columns[f"c{i}"] = pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        elif kind == "str":
            values = draw(st.lists(TEXT, min_size=n, max_size=n))
            columns[f"c{i}"] = pd.Series(values, dtype="object")
        elif kind == "str_or_none":
            values = draw(st.lists(st.one_of(TEXT, st.none()), min_size=n, max_size=n))
            columns[f"c{i}"] = pd.Series(values, dtype="object")
        else:
            values = draw(st.lists(st.one_of(TEXT, st.none(), FLOATS), min_size=n, max_size=n))
            columns[f"c{i}"] = pd.Series(values, dtype="object")
    return pd.DataFrame(columns)


def _mlflow_own(frame: pd.DataFrame, source, name: str, targets: str) -> dict:
    """What MLflow logs for the same frame by itself (integers as float64, as `dataset` does)."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    local = [s for s in get_registered_sources() if s._get_source_type() == "local"][-1]
    ints = frame.select_dtypes(include="integer").columns
    return mlflow.data.from_pandas(
        frame.astype(dict.fromkeys(ints, "float64")),
        source=local(Path(source).resolve().as_uri()),
        name=name,
        targets=targets,
    ).to_dict()


@settings(max_examples=150, deadline=None)
@given(frames())
def test_the_logged_dataset_equals_mlflows_own(tmp_path_factory, frame):
    source = tmp_path_factory.getbasetemp()
    ours = registry.dataset(frame, source, "training", str(frame.columns[0])).to_dict()
    assert ours == _mlflow_own(frame, source, "training", str(frame.columns[0]))


def test_a_labelled_table_of_ten_thousand_and_more_rows(tmp_path):
    """Past MLflow's 10,000 hashed rows, with the columns a training input has."""
    rng = np.random.default_rng(0)
    n = 12_345
    frame = pd.DataFrame(
        {
            "person_id": [f"p{i:06d}" for i in range(n)],
            "a": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
            "b": rng.random(n),
            "is_commuter": rng.integers(0, 2, n),
        }
    )
    ours = registry.dataset(frame, tmp_path, "training", "is_commuter").to_dict()
    assert ours == _mlflow_own(frame, tmp_path, "training", "is_commuter")
    assert '"required": false' in ours["schema"]  # column a has NaN: not required
