"""Batch features in bounded memory (issue 18): person partitions, the memory cap, clean failures.

A large input is split into person partitions, each run as the ordinary feature query; these
tests hold the partitioned build to the single query (same rows, same order, same bits), check
that every partition validates its rows, and run DuckDB out of memory for real under a tiny cap.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.errors import UserError
from commuter_badge.features import build as fb
from commuter_badge.features.build import (
    BYTES_PER_CROSSING,
    MEMORY_SETTING,
    BatchPlan,
    FeatureMemoryError,
    build_features,
    cap_bytes,
    machine_memory,
    memory_cap,
    write_features,
)
from commuter_badge.features.schema import TripDataError
from commuter_badge.simulate import simulate_world, write_world
from tests.code.tripdata import assert_same_features, flat_rows, trip, write_csv
from tests.conftest import AS_OF


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small simulated month: every archetype, double reads, a few hundred persons."""
    out = tmp_path_factory.mktemp("world")
    return write_world(simulate_world(400, AS_OF, seed=18), out)["trips"]


@pytest.fixture
def spill_root(tmp_path, monkeypatch):
    """DuckDB's spill directories go under here, so a test can see that none is left."""
    root = tmp_path / "spill"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.mark.parametrize("partitions", [2, 5])
def test_partitioned_build_is_the_single_build(world, partitions, spill_root):
    # given the same month built in one query and in person partitions
    whole = build_features(world, AS_OF, partitions=1)
    split = build_features(world, AS_OF, partitions=partitions)
    # then the rows, their order and every value agree exactly, and no spill directory is left
    assert len(whole) > 300, f"the world should have hundreds of persons, got {len(whole)}"
    assert_same_features(split, whole, f"{partitions} partitions")
    assert not list(spill_root.iterdir()), "a spill directory was left behind"


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_partitioned_file_is_the_single_file(world, tmp_path, suffix, spill_root):
    # given the month written in one query and in three partitions
    one, three = tmp_path / f"one{suffix}", tmp_path / f"three{suffix}"
    n1 = write_features(world, AS_OF, one, plan=BatchPlan.for_path(world, 1))
    n3 = write_features(world, AS_OF, three, plan=BatchPlan.for_path(world, 3))
    # then both hold the same persons, and the files hold the same table (CSV: the same text)
    assert n1 == n3 > 300, f"persons differ: {n1} vs {n3}"
    if suffix == ".csv":
        assert one.read_text() == three.read_text(), "CSV output differs between plans"
    else:
        # same names, types and values; only DuckDB's not-null flag on columns it can prove
        # never null (n_modes, main_mode) is lost when the parts are read back
        a, b = pq.read_table(one), pq.read_table(three)
        assert [(f.name, f.type) for f in a.schema] == [(f.name, f.type) for f in b.schema]
        assert a.cast(b.schema).equals(b), "Parquet output differs"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert not leftovers, f"temporary files left: {leftovers}"
    assert not list(spill_root.iterdir()), "a spill directory was left behind"


@pytest.mark.slow  # > 10 s: make test only, not the edit loop (make test-fast)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.lists(st.text("ab7 ", min_size=1, max_size=4), min_size=1, max_size=12),
    partitions=st.integers(2, 7),
)
def test_any_ids_any_partition_count_same_features(ids, partitions):
    # given persons whose ids may differ only by padding (normalised alike: one person)
    ids = [i for i in ids if i.strip()]
    if not ids:
        return
    rows = flat_rows(
        (pid, [trip("2021-10-11", 7 + k % 3), trip("2021-10-12", 18, direction="out")])
        for k, pid in enumerate(ids)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = write_csv(Path(tmp) / "t.csv", rows)
        # then any partition count gives the single query's table
        assert_same_features(
            build_features(path, AS_OF, partitions=partitions),
            build_features(path, AS_OF, partitions=1),
            f"{partitions} partitions of {ids!r}",
        )


@pytest.mark.parametrize("partitions", [1, 4])
def test_every_partition_checks_its_rows(tmp_path, partitions):
    # given a file whose fourth data row has a bad mode
    persons = [(f"p{k}", [trip("2021-10-11", 7)]) for k in range(8)]
    rows = flat_rows(persons)
    rows[3]["mode"] = "plane"
    path = write_csv(tmp_path / "bad.csv", rows)
    # when / then the error names the file, line and value whatever the partitioning
    with pytest.raises(TripDataError, match=r"bad\.csv line 5: column 'mode' value 'plane'"):
        build_features(path, AS_OF, partitions=partitions)


def test_plan_grows_with_the_input_and_shrinks_with_the_cap(world):
    # given the world's crossing count from the Parquet footer
    crossings = pq.ParquetFile(world).metadata.num_rows
    for cap in ("1MB", "4MB", "1GB"):
        plan = BatchPlan.for_path(world, memory=cap)
        # then a partition is sized to need at most half the cap
        want = max(1, math.ceil(crossings * BYTES_PER_CROSSING / (cap_bytes(cap) / 2)))
        assert plan.crossings == crossings, "the plan must count the file's crossings"
        assert plan.partitions == min(fb.MAX_PARTITIONS, want), f"{cap}: {plan}"
        assert plan.cap == cap, "the setting must be the cap"
    small = BatchPlan.for_path(world, memory="1GB")
    assert small.partitions == 1, "a small month at 1 GB needs no partitions"


def test_the_library_reads_the_cap_it_is_given_not_the_environment(world, monkeypatch):
    # given a setting in the environment that is not a size (a command would refuse it)
    monkeypatch.setenv(MEMORY_SETTING, "lots")
    # then a library call, given no cap, plans under the default (the command passes the setting)
    assert BatchPlan.for_path(world).cap == memory_cap(None), "the library read the environment"
    with pytest.raises(UserError, match=MEMORY_SETTING):
        BatchPlan.for_path(world, memory="lots")


def test_default_cap_is_half_the_machine_and_is_said(monkeypatch):
    # given no setting
    monkeypatch.delenv(MEMORY_SETTING, raising=False)
    # then the cap is half the machine's memory, and the summary names the setting
    half = machine_memory() / 2
    assert abs(cap_bytes(memory_cap()) - half) <= 2**20, f"{memory_cap()} is not half of memory"
    plan = BatchPlan(memory_cap(), 10, 1)
    assert MEMORY_SETTING in plan.describe(), plan.describe()


@pytest.mark.parametrize("text", ["lots", "12 parsecs", "-1GB", "", "3200"])
def test_a_bad_cap_names_the_setting(text):
    with pytest.raises(UserError, match=MEMORY_SETTING):
        cap_bytes(text)


@pytest.mark.parametrize(("text", "bytes_"), [("3200MB", 3_200_000_000), ("8GiB", 8 * 2**30)])
def test_cap_units_are_duckdbs(text, bytes_):
    assert cap_bytes(text) == bytes_, f"{text} parsed as {cap_bytes(text)}"


def test_out_of_memory_is_one_clean_error(world, tmp_path, spill_root):
    # given a previous feature file and a cap far too small for DuckDB to run the query
    out = tmp_path / "f.parquet"
    out.write_bytes(b"previous output")
    tiny = BatchPlan.for_path(world, memory="1MB")
    # when the build runs out of memory for real
    with pytest.raises(FeatureMemoryError, match=MEMORY_SETTING) as caught:
        write_features(world, AS_OF, out, plan=tiny)
    # then the old output is untouched, and neither a temp file nor a spill directory is left
    assert "ran out of memory" in str(caught.value), str(caught.value)
    assert out.read_bytes() == b"previous output", "the previous output was changed"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left"
    assert not list(spill_root.iterdir()), "a spill directory was left behind"


def test_out_of_memory_on_the_command_line_says_what_to_set(world, tmp_path, monkeypatch):
    # given the same tiny cap for `commuter features` and `build_features` (score, train)
    monkeypatch.setenv(MEMORY_SETTING, "1MB")
    result = CliRunner().invoke(
        app, ["features", "--trips", str(world), "--as-of", str(AS_OF), "--out", "f.parquet"]
    )
    # then the command exits 2 with the setting named in its error line, and no file appears
    last = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stderr}"
    assert last.startswith("error:"), last
    assert MEMORY_SETTING in last, last
    assert not (tmp_path / "f.parquet").exists(), "a file was written after running out"
    with pytest.raises(FeatureMemoryError, match=MEMORY_SETTING):
        build_features(world, AS_OF, memory="1MB")


def test_window_is_kept_by_partitions(world):
    # given a window that leaves out the last days: partitions change nothing there either
    day = AS_OF - dt.timedelta(days=5)
    assert_same_features(
        build_features(world, day, 20, partitions=3),
        build_features(world, day, 20, partitions=1),
        "20-day window",
    )


def test_a_table_too_big_for_memory_says_how_much_it_needs(world, monkeypatch):
    # given a machine that cannot hold the pandas copy of the feature table
    def no_room(table):
        raise MemoryError

    monkeypatch.setattr(fb, "to_frame", no_room)
    # when / then the error says how many persons and how much memory the table needs
    with pytest.raises(FeatureMemoryError, match=r"feature table of [0-9,]+ persons needs about"):
        build_features(world, AS_OF)


def test_the_summary_line_says_the_cap_it_ran_with(world, tmp_path, monkeypatch):
    # given a cap set by the setting
    monkeypatch.setenv(MEMORY_SETTING, "3200MB")
    # when `commuter features` runs
    result = CliRunner().invoke(
        app, ["features", "--trips", str(world), "--as-of", str(AS_OF), "--out", "f.parquet"]
    )
    # then its one-line summary names the cap and the setting
    assert result.exit_code == 0, result.stderr
    assert f"DuckDB memory cap 3.2 GB ({MEMORY_SETTING})" in result.stdout, result.stdout
