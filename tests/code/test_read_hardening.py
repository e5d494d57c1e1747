"""Bad input that used to pass silently or be reported wrongly (issue 15 items 6 and 7)."""

from __future__ import annotations

import gzip
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from commuter_badge.features.build import build_features
from commuter_badge.features.read import discover, read_labels
from commuter_badge.features.schema import MAX_ID_LENGTH, TripDataError
from tests.code.tripdata import NOV_AS_OF, assert_same_features, flat_rows, trip, write_csv


def rows() -> list[dict]:
    return flat_rows(
        [
            ("p1", [trip("2021-11-22", 7), trip("2021-11-22", 18, direction="out")]),
            ("p2", [trip("2021-11-23", 8, mode="rail", site_id="RL-WUQING", region="")]),
        ]
    )


def parquet_with(path, **columns) -> str:
    base = rows()
    data = {
        "person_id": [r["person_id"] for r in base],
        "ts": pa.array([r["ts"] for r in base], pa.timestamp("us", tz="UTC")),
        "direction": [r["direction"] for r in base],
        "mode": [r["mode"] for r in base],
        "site_id": [r["site_id"] for r in base],
        "region": [r["region"] for r in base],
    }
    data.update(columns)
    pq.write_table(pa.table(data), path)
    return str(path)


@pytest.mark.parametrize(
    ("column", "values", "found"),
    [
        ("person_id", pa.array([1, 1, 2], pa.int64()), "BIGINT"),
        ("site_id", pa.array([3.5, 3.5, 4.0], pa.float64()), "DOUBLE"),
        ("site_id", pa.array([[1, 2], [1, 2], [3]], pa.list_(pa.int64())), "BIGINT[]"),
        ("direction", pa.array([1, 0, 1], pa.int32()), "INTEGER"),
    ],
)
def test_parquet_text_columns_of_another_type_are_refused(tmp_path, column, values, found):
    # given a Parquet file whose text column holds numbers or lists
    path = parquet_with(tmp_path / "t.parquet", **{column: values})
    # when / then the column and its type are named; nothing is coerced to "3.5" or "[1, 2]"
    with pytest.raises(
        TripDataError, match=re.escape(f"{path}: column '{column}' has type {found}; expected text")
    ):
        build_features(path, NOV_AS_OF)


def test_an_all_null_region_column_is_accepted(tmp_path):
    # given a Parquet file whose optional region column is entirely null (type null)
    path = parquet_with(tmp_path / "t.parquet", region=pa.nulls(3))
    # when read
    got = build_features(path, NOV_AS_OF)
    # then both persons are there, with no main region
    assert sorted(got["person_id"]) == ["p1", "p2"], got


def test_gzip_csv_is_read_like_plain_csv(tmp_path):
    # given the same trips as .csv and .csv.gz
    plain = write_csv(tmp_path / "plain" / "t.csv", rows())
    packed = tmp_path / "packed" / "t.csv.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    # when both are read (the .gz one through its directory)
    assert discover(packed.parent) == [packed], "the .csv.gz file is a trip file"
    # then the features are identical
    assert_same_features(
        build_features(packed.parent, NOV_AS_OF), build_features(plain, NOV_AS_OF), "gz"
    )


@pytest.mark.parametrize("name", ["t.csv.bz2", "t.parquet.gz", "t.csv.zip"])
def test_trip_data_in_an_unreadable_form_is_refused_by_name(tmp_path, name):
    # given a directory with a readable file and trip data in a form the reader cannot read
    write_csv(tmp_path / "d" / "ok.csv", rows())
    bad = tmp_path / "d" / name
    bad.write_bytes(b"\x00\x01")
    # when / then the file is named instead of being skipped
    with pytest.raises(
        TripDataError, match=re.escape(f"{bad}: trip data in a form that cannot be read")
    ):
        discover(tmp_path / "d")


def test_other_files_are_named_in_a_warning(tmp_path, caplog):
    # given a directory with trips and a README
    write_csv(tmp_path / "d" / "ok.csv", rows())
    (tmp_path / "d" / "README.txt").write_text("about")
    # when discovered
    with caplog.at_level("WARNING"):
        files = discover(tmp_path / "d")
    # then the trips are read and the README is named, not dropped silently
    assert [f.name for f in files] == ["ok.csv"], files
    assert "README.txt" in caplog.text, caplog.text


def test_ids_longer_than_the_service_accepts_are_refused_in_batch(tmp_path):
    # given one id one character over the limit the service applies
    long_id = "x" * (MAX_ID_LENGTH + 1)
    data = rows()
    data[2] = {**data[2], "person_id": long_id}
    path = write_csv(tmp_path / "t.csv", data)
    # when / then batch refuses it too, naming the line and the rule
    with pytest.raises(
        TripDataError,
        match=re.escape(
            f"{path} line 4: column 'person_id' value {long_id!r} is not a non-empty id of at most {MAX_ID_LENGTH} characters"
        ),
    ):
        build_features(path, NOV_AS_OF)


def test_csv_line_numbers_count_newlines_inside_quoted_fields(tmp_path):
    # given a CSV whose second row has a region with an embedded newline, and a bad fourth row
    path = tmp_path / "t.csv"
    path.write_text(
        "person_id,ts,direction,mode,site_id,region\n"
        "p1,2021-11-22T07:00:00+08:00,in,car,CK-A,a\n"
        'p1,2021-11-22T18:00:00+08:00,out,car,CK-A,"two\nlines"\n'
        "p2,2021-11-23T07:00:00+08:00,in,car,CK-A,a\n"
        "p2,2021-11-23T18:00:00+08:00,sideways,car,CK-A,a\n"
    )
    # when / then the bad row is reported on the line it is on in the file (6), not 5
    with pytest.raises(
        TripDataError, match=re.escape(f"{path} line 6: column 'direction' value 'sideways'")
    ):
        build_features(path, NOV_AS_OF)


def test_a_bad_label_is_reported_at_its_own_row_with_its_value(tmp_path):
    # given labels whose eighth row says "yes"
    lines = ["person_id,is_commuter"] + [f"p{i},{i % 2}" for i in range(1, 8)] + ["p8,yes"]
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    # when / then its line in the file (9, after the header) and 'yes' are named
    with pytest.raises(
        TripDataError,
        match=re.escape(f"{path} line 9: column 'is_commuter' value 'yes' is not 0 or 1"),
    ):
        read_labels(path)


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("", "the labels file is empty"),
        ("person_id,is_commuter\n", "no labels (the file has a header and no rows)"),
    ],
)
def test_empty_and_header_only_label_files_name_the_file_and_cause(tmp_path, text, cause):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(TripDataError, match=re.escape(f"{path}: {cause}")):
        read_labels(path)


def test_parquet_labels_accept_integers_booleans_and_whole_floats(tmp_path):
    for values in (pa.array([0, 1], pa.int64()), pa.array([False, True]), pa.array([0.0, 1.0])):
        path = tmp_path / "labels.parquet"
        pq.write_table(pa.table({"person_id": ["a", "b"], "is_commuter": values}), path)
        got = read_labels(path)
        assert got["is_commuter"].tolist() == [0, 1], (values.type, got)
    pq.write_table(pa.table({"person_id": ["a", "b"], "is_commuter": [0.0, 0.5]}), path)
    with pytest.raises(TripDataError, match="row 2: column 'is_commuter' value 0.5 is not 0 or 1"):
        read_labels(path)
