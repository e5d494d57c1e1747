"""The training config: one frozen object, from defaults, a TOML file and key=value overrides."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core.config import ConfigError, TrainConfig, load_config, to_toml
from commuter_badge.models.core.split import PARTS


def test_defaults_are_the_settings_models_were_trained_with():
    # Given no file and no overrides, then the split and LightGBM settings are the ones chosen on
    # the quality benchmark's development worlds (issue 14), passed to LightGBM as they are.
    config = load_config()
    assert config.parts() == PARTS, "default split shares differ from models/core/split.py"
    assert PARTS == {"fit": 0.5, "early_stop": 0.05, "calibration": 0.3, "validation": 0.15}
    params = config.lgb_params()
    assert params["feature_fraction"] == 0.9, params
    assert params["learning_rate"] == 0.05, params
    assert params["num_leaves"] == 31, params
    assert params["min_data_in_leaf"] == 200, params
    assert params["lambda_l2"] == 10.0, params
    assert config.label_noise == 0.0, "the certificate is against the labels unless told"
    monotone = dict(zip(FEATURE_NAMES, params["monotone_constraints"], strict=True))
    assert monotone["workdays_active"] == 1, monotone
    assert monotone["entry_hour_mean"] == 0, monotone


def test_monotone_features_are_model_features_and_round_trip_through_toml(tmp_path):
    with pytest.raises(ConfigError, match="not model features: nope"):
        load_config(None, ["monotone_increasing=workdays_active,nope"])
    config = load_config(None, ["monotone_increasing=active_weeks, crossings"])
    assert config.monotone_increasing == ("active_weeks", "crossings")
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config


def test_config_is_frozen():
    with pytest.raises(ValueError, match="frozen"):
        TrainConfig().target_fpr = 0.5  # type: ignore[misc]


def test_file_then_params_then_named_options(tmp_path):
    # Given a TOML file with tables, and overrides on top,
    path = tmp_path / "train.toml"
    path.write_text("[policy]\ntarget_fpr = 0.02\n\n[lightgbm]\nnum_leaves = 15\nlambda_l2 = 1.5\n")
    config = load_config(path, ["num_leaves=63", "seed=4"], seed=9)
    # then later sources win and every value arrives typed.
    assert config.target_fpr == 0.02, "from the file"
    assert config.lambda_l2 == 1.5, "from the file"
    assert config.num_leaves == 63, "--param overrides the file"
    assert config.seed == 9, "a named option overrides --param"


def test_unknown_key_is_named_with_the_known_ones(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("num_leafs = 10\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: num_leafs: .*known settings: target_fpr"):
        load_config(path)


def test_bad_values_and_forms_are_clear():
    with pytest.raises(ConfigError, match=r"--param: num_leaves: .*integer"):
        load_config(params=["num_leaves=many"])
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        load_config(params=["num_leaves"])
    with pytest.raises(ConfigError, match="share_\\* must sum to 1"):
        load_config(params=["share_fit=0.6"])


def test_unreadable_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "x.toml").write_text("target_fpr = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "x.toml")


@given(
    st.floats(0.001, 0.2),
    st.integers(2, 255),
    st.floats(0.0, 10.0, allow_nan=False),
    st.integers(-5, 5),
)
def test_logged_toml_reads_back_to_the_same_config(fpr, leaves, l2, seed):
    config = TrainConfig(target_fpr=fpr, num_leaves=leaves, lambda_l2=l2, seed=seed)
    path_text = to_toml(config)
    assert TrainConfig(**tomllib.loads(path_text)) == config, path_text


def test_early_stopping_needs_its_part_or_folds():
    # Given no early_stop share, then rounds must come from folds of the fit part, and the error
    # says so; one fold is no cross-validation.
    with pytest.raises(ConfigError, match="early_stopping_folds >= 2"):
        load_config(params=["share_early_stop=0", "share_fit=0.55"])
    with pytest.raises(ConfigError, match="early_stopping_folds must be 0"):
        load_config(params=["early_stopping_folds=1"])
    config = load_config(params=["share_early_stop=0", "share_fit=0.55", "early_stopping_folds=5"])
    assert config.parts()["early_stop"] == 0
    assert config.early_stopping_folds == 5


def test_tuning_without_an_early_stop_part_says_so():
    import pandas as pd

    from commuter_badge.models.core.fitting import fit_booster
    from commuter_badge.models.core.tuning import TuningError, tune

    config = load_config(params=["share_early_stop=0", "share_fit=0.55", "early_stopping_folds=5"])
    data = pd.DataFrame({"person_id": ["a", "b"], "is_commuter": [0, 1], "part": ["fit", "fit"]})
    with pytest.raises(TuningError, match="share_early_stop"):
        tune(data, config, 1, fit_booster)
