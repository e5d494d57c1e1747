"""Spark computes the same features and scores as DuckDB from the one feature definition.

Data: a simulated month around National Day 2021 (holidays and make-up working days in the window),
made messy — Parquet and CSV files in one directory tree, mixed UTC offsets, sub-second stamps,
double reads, odd casing, rows outside the window, shuffled. DuckDB (`build_features`) is the
reference; Spark must agree person by person.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest

from commuter_badge.features.build import model_matrix
from commuter_badge.features.definitions import CONTEXT_COLUMNS, FEATURES
from commuter_badge.features.read import read_labels
from commuter_badge.features.schema import TripDataError
from commuter_badge.models.core.bundle import CommuterModel, ModelMeta
from tests.spark.conftest import AS_OF, PERSONS

pytestmark = pytest.mark.spark

INT_FEATURES = [f.name for f in FEATURES if f.kind == "int"]
FLOAT_FEATURES = [f.name for f in FEATURES if f.kind == "float"]


def test_spark_features_equal_duckdb_for_every_person(duckdb_features, spark_feature_frame):
    duck = duckdb_features.set_index("person_id").sort_index()
    spark = spark_feature_frame.set_index("person_id").sort_index()
    assert len(duck) > 0.8 * PERSONS  # the month really is there
    assert "edge-only" not in duck.index  # only crossings at or after as_of: no row
    assert list(spark.index) == list(duck.index)
    assert list(spark.columns) == list(duck.columns)
    assert [str(t) for t in spark.dtypes] == [str(t) for t in duck.dtypes]
    for name in INT_FEATURES:
        pd.testing.assert_series_equal(spark[name], duck[name], check_exact=True, obj=name)
    # floats come row by row from integer aggregates: the engines agree to the last bit
    for name in FLOAT_FEATURES:
        a, b = spark[name].to_numpy(), duck[name].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: missing values differ"
        both = ~np.isnan(a)
        worst = np.max(np.abs(a[both] - b[both]), initial=0.0)
        assert worst == 0.0, f"{name}: differs by up to {worst:g}"
    for name in CONTEXT_COLUMNS:
        pd.testing.assert_series_equal(spark[name], duck[name], obj=name)


def test_window_holds_holidays_and_make_up_days(duckdb_features):
    # 2021-09-22 .. 10-19 has 17 statutory working days (National Day week off, Sun 9-26 and
    # Sat 10-9 worked), not the 20 a Monday-Friday rule gives; workday_coverage divides by them.
    row = duckdb_features[duckdb_features["workdays_active"] > 0].iloc[0]
    assert row["workday_coverage"] == pytest.approx(row["workdays_active"] / 17)


@pytest.fixture(scope="session")
def model(world_dir, duckdb_features):
    """A small deterministic LightGBM model trained on DuckDB's features and the world's labels."""
    labels = read_labels(world_dir / "labels.csv")
    data = duckdb_features.merge(labels, on="person_id", how="inner")
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 10,
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
        "seed": 7,
        "verbose": -1,
    }
    booster = lgb.train(
        params, lgb.Dataset(model_matrix(data), label=data["is_commuter"]), num_boost_round=30
    )
    meta = ModelMeta(threshold=0.5, target_fpr=0.01, calib_a=1.0, calib_b=0.0)
    return CommuterModel(booster, meta, version="7")


def test_spark_scores_equal_batch_scores(spark_feature_df, duckdb_features, model):
    from commuter_badge.models.runs.score import OUTPUT_SCHEMA
    from commuter_badge.models.runs.spark_score import score_features

    # spark_score = spark_features + score_features; the features are the ones compared above.
    table = score_features(spark_feature_df, model).toArrow()
    # The same columns, in the same order and types, as `commuter score` writes (contract §2).
    assert table.schema.names == OUTPUT_SCHEMA.names
    assert [str(t) for t in table.schema.types] == [str(t) for t in OUTPUT_SCHEMA.types]
    got = table.to_pandas().set_index("person_id").sort_index()
    expected = pd.DataFrame(
        {"p": model.predict_proba(duckdb_features)}, index=duckdb_features["person_id"]
    ).sort_index()
    assert list(got.index) == list(expected.index)
    worst = np.max(np.abs(got["commuter_probability"].to_numpy() - expected["p"].to_numpy()))
    assert worst <= 1e-6, f"probabilities differ by up to {worst:g}"
    assert (got["badge"].to_numpy() == (expected["p"].to_numpy() >= 0.5)).all()
    # Both decisions occur, so comparing badges means something.
    assert 0 < got["badge"].sum() < len(got)
    assert (got["threshold"] == 0.5).all()
    assert (got["model_version"] == "7").all()
    days = duckdb_features.set_index("person_id")["days_since_first"].sort_index()
    assert (got["days_since_first"].to_numpy() == days.to_numpy()).all()


def test_write_spark_features_and_scores(spark, world_dir, model, tmp_path):
    """The CLI's entry points, on a small feed: Spark output directories, counts, same numbers."""
    from commuter_badge.features.build import build_features
    from commuter_badge.features.spark import write_spark_features
    from commuter_badge.models.runs.spark_score import write_spark_scores

    trips = pq.read_table(world_dir / "trips.parquet")
    small = trips.filter(
        pa.compute.is_in(
            trips.column("person_id"), value_set=trips.column("person_id").unique()[:40]
        )
    )
    pq.write_table(small, tmp_path / "small.parquet")
    duck = build_features(tmp_path / "small.parquet", AS_OF)

    out = tmp_path / "features.parquet"
    assert write_spark_features(tmp_path / "small.parquet", AS_OF, out) == len(duck)
    assert out.is_dir()  # a Spark output directory of part files
    back = pq.read_table(out).to_pandas().sort_values("person_id", ignore_index=True)
    assert back["person_id"].tolist() == sorted(duck["person_id"])

    out = tmp_path / "scores.csv"
    assert write_spark_scores(tmp_path / "small.parquet", AS_OF, out, model=model) == len(duck)
    scores = pd.concat(pd.read_csv(f, dtype={"person_id": str}) for f in out.glob("part-*.csv"))
    scores = scores.set_index("person_id").sort_index()
    expected = model.predict_proba(duck.sort_values("person_id", ignore_index=True))
    np.testing.assert_allclose(scores["commuter_probability"].to_numpy(), expected, atol=1e-6)
    assert not spark.sparkContext._jsc.sc().isStopped()  # the caller's session stays up


def _one_trip_csv(path, **overrides):
    row = {
        "person_id": "p1",
        "ts": "2021-10-11T07:04:51+08:00",
        "direction": "in",
        "mode": "car",
        "site_id": "CK-G1-XIJI",
        "region": "langfang-xianghe",
    }
    good = dict(row, person_id="p0")
    row.update(overrides)
    rows = [good, row, good]
    columns = [c for c in row if row[c] is not ...]
    lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("overrides", "column", "value"),
    [
        ({"direction": "sideways"}, "direction", "sideways"),
        ({"mode": "plane"}, "mode", "plane"),
        ({"ts": "2021-10-11 07:04:51"}, "ts", "2021-10-11 07:04:51"),  # no offset
        ({"ts": "yesterday"}, "ts", "yesterday"),
        ({"site_id": "  "}, "site_id", "  "),
    ],
    ids=["direction", "mode", "ts-no-offset", "ts-garbage", "site-empty"],
)
def test_bad_value_names_file_column_and_value(spark, tmp_path, overrides, column, value):
    from commuter_badge.features.spark import read_trips_spark

    bad = _one_trip_csv(tmp_path / "bad.csv", **overrides)
    with pytest.raises(TripDataError) as err:
        read_trips_spark(spark, str(tmp_path))
    message = str(err.value)
    assert f"column '{column}'" in message
    assert repr(value) in message
    assert bad.name in message
    assert "row numbers are not available on Spark" in message


def test_missing_column_names_file_and_column(spark, tmp_path):
    from commuter_badge.features.spark import spark_features

    _one_trip_csv(tmp_path / "trips.csv", region=...)
    pq.write_table(pa.table({"person_id": ["a"], "label": [1]}), tmp_path / "other.parquet")
    with pytest.raises(TripDataError, match=r"other\.parquet: missing required column\(s\) ts"):
        spark_features(spark, str(tmp_path), AS_OF)


def test_bad_file_in_a_good_directory_is_not_dropped(spark, messy_dir, tmp_path):
    import shutil

    from commuter_badge.features.spark import read_trips_spark

    directory = tmp_path / "trips"
    shutil.copytree(messy_dir, directory)
    _one_trip_csv(directory / "csv" / "late-feed.csv", direction="sideways")
    with pytest.raises(TripDataError, match=r"late-feed\.csv: column 'direction' value 'sideways'"):
        read_trips_spark(spark, str(directory))


def test_missing_path_and_timestamp_without_zone(spark, tmp_path):
    from commuter_badge.features.spark import read_trips_spark

    with pytest.raises(TripDataError, match="no such file or directory"):
        read_trips_spark(spark, str(tmp_path / "nothing-here"))
    naive = pa.table(
        {
            "person_id": ["a"],
            "ts": pa.array([0], pa.timestamp("us")),
            "direction": ["in"],
            "mode": ["car"],
            "site_id": ["s"],
            "region": [""],
        }
    )
    pq.write_table(naive, tmp_path / "naive.parquet")
    with pytest.raises(TripDataError, match="column 'ts' has type timestamp_ntz"):
        read_trips_spark(spark, str(tmp_path / "naive.parquet"))
    nanos = naive.set_column(1, "ts", pa.array([0], pa.timestamp("ns", tz="UTC")))
    pq.write_table(nanos, tmp_path / "nanos.parquet")
    with pytest.raises(TripDataError, match="nanos.parquet: column 'ts' holds nanosecond"):
        read_trips_spark(spark, str(tmp_path / "nanos.parquet"))


# Spark's `hash` is 32-bit Murmur3: these two ids share it (found by grouping hash() over
# 'person-0' .. 'person-399999' on Spark); their xxhash64 values differ.
CLASHING_IDS = ("person-87627", "person-330503")


def _two_person_trips(path):
    rows = [
        (pid, f"2021-10-{day:02d}T07:{i:02d}:00+08:00", "in")
        for i, pid in enumerate(CLASHING_IDS)
        for day in (11, 12, 13)
    ]
    lines = ["person_id,ts,direction,mode,site_id,region"]
    lines += [f"{pid},{ts},{d},car,CK-G1-XIJI,langfang-xianghe" for pid, ts, d in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ids_sharing_a_32_bit_hash_stay_apart(spark, tmp_path):
    from commuter_badge.features.spark import spark_features

    trips = _two_person_trips(tmp_path / "two.csv")
    rows = spark_features(spark, str(trips), AS_OF).select("person_id", "crossings").collect()
    assert sorted((r.person_id, r.crossings) for r in rows) == sorted((p, 3) for p in CLASHING_IDS)


def test_a_key_clash_fails_the_job_instead_of_writing_null_ids(spark, tmp_path, monkeypatch):
    import commuter_badge.features.spark as fs

    monkeypatch.setattr(fs, "SPARK_HASH", "hash")  # 32-bit: the two ids clash
    trips = _two_person_trips(tmp_path / "two.csv")
    with pytest.raises(Exception, match="two person ids share a 64-bit hash"):
        fs.spark_features(spark, str(trips), AS_OF).collect()
