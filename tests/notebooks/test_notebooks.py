"""The reviewer notebooks run top to bottom on a fresh kernel, on small simulated data.

Each notebook is executed with nbclient in a kernel of this very interpreter (the project's venv),
with the working directory and every store (MLflow, Jupyter runtime, IPython profile) under
tmp_path, so nothing is written to the repository or to the user's home. The notebooks are
committed without outputs; that is checked too.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import AS_OF

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXPLORE = NOTEBOOKS / "01_explore_crossings.ipynb"
REVIEW = NOTEBOOKS / "02_review_champion.ipynb"
KERNEL = "commuter-venv"


def test_notebooks_are_committed_without_outputs():
    for path in (EXPLORE, REVIEW):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        dirty = [
            i
            for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
        ]
        assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel spec for this interpreter, first on JUPYTER_PATH; Jupyter/IPython state in tmp."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "commuter-badge venv",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return KERNEL


def parameterise(nb, **params):
    """What papermill does: a cell of assignments right after the one tagged `parameters`."""
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    source = "\n".join(f"{name} = {value!r}" for name, value in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(tagged[0] + 1, cell)
    return nb


def execute(path: Path, cwd: Path, kernel: str, **params):
    """Run every cell in order on a fresh kernel; a failing cell raises CellExecutionError."""
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    nb = nbformat.read(path, as_version=4)
    if params:
        nb = parameterise(nb, **params)
    cwd.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(cwd)}}
    )
    start = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - start
    after = sorted(p.name for p in NOTEBOOKS.iterdir())
    assert after == before, "the notebook left files in notebooks/"
    print(f"{path.name}: {elapsed:.1f} s")
    return nb, elapsed


def images(nb) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_explore_notebook_runs_and_draws(tmp_path, kernel):
    nb, _ = execute(EXPLORE, tmp_path / "cwd", kernel)
    # day, hour, archetype x day, sample persons, feature boxes, two-feature scatter
    assert images(nb) >= 6, f"only {images(nb)} figures"
    assert list((tmp_path / "cwd").iterdir()) == [], "notebook 01 wrote into its working directory"


def test_explore_notebook_takes_papermill_parameters():
    nb = nbformat.read(EXPLORE, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "notebook 01 needs exactly one cell tagged 'parameters'"
    for name in ("TRIPS = None", "LABELS = None", "AS_OF = ", "WINDOW_DAYS = "):
        assert name in tagged[0].source, f"parameter {name!r} missing (the default simulates)"


@pytest.mark.slow
def test_explore_notebook_reads_given_trips_and_labels(tmp_path, kernel):
    """Pointed at a month of trips in the contract's format (here a simulated one written to
    disk, read like real data: no archetypes), with another as_of."""
    from commuter_badge.simulate.world import simulate_world, write_world

    as_of = AS_OF.replace(day=AS_OF.day + 1)
    paths = write_world(simulate_world(3_000, as_of, seed=9), tmp_path / "month")
    nb, _ = execute(
        EXPLORE,
        tmp_path / "cwd",
        kernel,
        TRIPS=str(paths["trips"]),
        LABELS=str(paths["labels"]),
        AS_OF=as_of.isoformat(),
    )
    out = text(nb)
    assert f"{paths['trips']}, as of {as_of}" in out, "the parameters were not used"
    assert "labelled commuter" in out, "persons grouped by their label"
    assert images(nb) >= 6, f"only {images(nb)} figures"


@pytest.mark.slow
def test_review_notebook_trains_a_demo_without_a_champion(tmp_path, kernel, isolated_stores):
    configured = Path(isolated_stores.removeprefix("sqlite:///"))
    nb, _ = execute(REVIEW, tmp_path / "cwd", kernel)
    out = text(nb)
    assert "no champion in this store -> demo model below" in out
    assert "digest matches the run: True" in out
    assert "contract §4 metrics all logged" in out
    assert "global SHAP view, largest mean |contribution|" in out, "no global SHAP view"
    assert "shown as counts" in out, "small slices are not said to be counts"
    # logged figures, trade-off, calibration, importance, SHAP, slices, model vs rule baseline
    assert images(nb) >= 7, f"only {images(nb)} figures"
    assert not configured.exists(), "the demo must not write into the configured MLflow store"


@pytest.mark.slow
def test_review_notebook_reads_the_champion_of_the_configured_store(tmp_path, kernel, monkeypatch):
    """As after `commuter train` in a project directory, opened by Jupyter from its notebooks/."""
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.models.runs.train import TrainConfig, train
    from commuter_badge.simulate.world import simulate_world, write_world

    project = tmp_path / "project"
    write_world(simulate_world(12_000, AS_OF, seed=5), project / "world")
    monkeypatch.chdir(project)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    registry.configure(uri)
    # Relative paths, as the CLI logs them when run from the project directory.
    result = train("world/trips.parquet", "world/labels.csv", AS_OF, TrainConfig(num_threads=1))
    assert result.promoted, f"the first model should pass its gates: {result.gates}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the CLI default: ./mlflow.db, here ../mlflow.db

    nb, _ = execute(REVIEW, project / "notebooks", kernel)
    out = text(nb)
    assert f"reviewing the champion in sqlite:///{project / 'mlflow.db'}" in out
    assert f"(version {result.version}, aliases ['champion'])" in out
    assert "digest matches the run: True" in out
    assert images(nb) >= 5
    assert not (project / "notebooks" / "mlflow.db").exists(), "looking must not create a store"
