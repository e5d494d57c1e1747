"""The package graph points one way, and `make lint`'s import contract notices when it does not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lay_out(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    subprocess.run([sys.executable, ROOT / "tools" / "import_tree.py", tree], check=True)
    return tree


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--config", ROOT / "pyproject.toml", "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
    )


def test_the_graph_is_kept(tmp_path):
    result = lint(lay_out(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout, result.stdout


def test_a_reversed_import_breaks_the_layers_contract(tmp_path):
    # given the package with features importing from serving (an edge pointing up)
    tree = lay_out(tmp_path)
    target = tree / "commuter_badge" / "features" / "definitions.py"
    target.write_text(target.read_text() + "\nfrom commuter_badge.serving import schemas  # noqa\n")
    # when the contracts are checked
    result = lint(tree)
    # then the check fails and names the contract and the import
    assert result.returncode != 0, result.stdout
    assert (
        "Layers point one way: cli -> serving -> stores -> models -> features BROKEN"
        in result.stdout
    )
    assert "commuter_badge.features.definitions -> commuter_badge.serving" in result.stdout


def test_an_import_hidden_in_a_function_is_seen_too(tmp_path):
    tree = lay_out(tmp_path)
    target = tree / "commuter_badge" / "models" / "runs" / "score.py"
    target.write_text(
        target.read_text() + "\n\ndef _sneaky():\n    from commuter_badge.cli import app  # noqa\n"
    )
    result = lint(tree)
    assert result.returncode != 0, result.stdout
    assert "commuter_badge.models.runs.score -> commuter_badge.cli" in result.stdout, result.stdout


def test_the_bottom_layer_imports_no_layer(tmp_path):
    tree = lay_out(tmp_path)
    target = tree / "commuter_badge" / "settings.py"
    target.write_text(target.read_text() + "\nimport commuter_badge.features.sql  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0, result.stdout
    assert (
        "The bottom (settings, errors, atomic writes, locks) imports no layer BROKEN"
        in result.stdout
    )
    shutil.rmtree(tree)


def test_a_reversed_import_between_rooms_of_models_breaks_their_contract(tmp_path):
    # given the pure core importing from the runs above it
    tree = lay_out(tmp_path)
    target = tree / "commuter_badge" / "models" / "core" / "gates.py"
    target.write_text(
        target.read_text() + "\nfrom commuter_badge.models.runs import promotion  # noqa\n"
    )
    # when the contracts are checked
    result = lint(tree)
    # then the rooms' contract fails and names the import
    assert result.returncode != 0, result.stdout
    assert "Rooms of models point one way: runs -> reporting -> mlflow_edge -> core BROKEN" in (
        result.stdout
    )
    assert "commuter_badge.models.core.gates -> commuter_badge.models.runs.promotion" in (
        result.stdout
    )


def test_the_models_core_imports_no_mlflow(tmp_path):
    tree = lay_out(tmp_path)
    target = tree / "commuter_badge" / "models" / "core" / "threshold.py"
    target.write_text(target.read_text() + "\n\ndef _sneaky():\n    import mlflow  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0, result.stdout
    assert "The models core is pure: no MLflow, no figures BROKEN" in result.stdout
    assert "commuter_badge.models.core.threshold -> mlflow" in result.stdout, result.stdout
