"""Coverage before work: a window outside the data is an error or a warning with the dates."""

from __future__ import annotations

import datetime as dt

import pytest

from commuter_badge.features.coverage import CoverageError, check_coverage
from tests.conftest import AS_OF


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from commuter_badge.simulate.world import simulate_world, write_world

    root = tmp_path_factory.mktemp("coverage")
    write_world(simulate_world(300, AS_OF, seed=8), root)
    return root


def test_window_inside_the_data_passes_quietly(world):
    cov = check_coverage(world / "trips.parquet", AS_OF, 28)
    assert cov.in_window > 0, "the simulated month has crossings in its own window"
    assert cov.warnings == (), cov.warnings


def test_window_past_the_data_names_both_ranges(world):
    late = AS_OF + dt.timedelta(days=100)
    with pytest.raises(
        CoverageError, match=r"no crossing in the window 2021-12-31 to 2022-01-27 \(28 days"
    ) as e:
        check_coverage(world / "trips.parquet", late, 28)
    assert "the trips run from 2021-09" in str(e.value), str(e.value)


def test_window_sticking_out_warns_with_the_dates(world):
    early = check_coverage(world / "trips.parquet", AS_OF - dt.timedelta(days=10), 28)
    assert any("window starts 2021-09-12" in w for w in early.warnings), early.warnings
    late = check_coverage(world / "trips.parquet", AS_OF + dt.timedelta(days=10), 28)
    assert any("window ends 2021-10-29" in w for w in late.warnings), late.warnings


def test_features_command_refuses_a_window_past_the_data(world, tmp_path):
    from typer.testing import CliRunner

    from commuter_badge.cli.main import app

    res = CliRunner().invoke(
        app,
        [
            "features",
            "--trips",
            str(world / "trips.parquet"),
            "--as-of",
            "2022-03-01",
            "--out",
            str(tmp_path / "f.csv"),
        ],
    )
    assert res.exit_code != 0, "0 persons must not pass as success"
    assert "no crossing in the window" in res.output, res.output
    assert not (tmp_path / "f.csv").exists(), "an empty output was written"


def test_one_class_error_names_its_cause(world):
    from commuter_badge.models.core.config import TrainConfig
    from commuter_badge.models.core.data import labelled_features
    from commuter_badge.models.core.fitting import OneClassError, fit_model, split

    labelled = labelled_features(world / "trips.parquet", world / "labels.csv", AS_OF)
    frame = split(labelled, TrainConfig()).assign(is_commuter=0)
    with pytest.raises(OneClassError, match=r"labelled is_commuter=0; the labels need both"):
        fit_model(frame, TrainConfig(), AS_OF)
    few = split(labelled, TrainConfig()).head(12)
    with pytest.raises(OneClassError, match=r"only 12 labelled persons .* are split four ways"):
        fit_model(few, TrainConfig(), AS_OF)
