"""The installed package is one namespace of our own, from a wheel as from the editable install."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("commuter_badge-*.whl")
    return built


def test_the_wheel_has_one_top_level_import_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"commuter_badge"}, f"top-level names in the wheel: {sorted(tops)}"
    for layer in ("features", "simulate", "models", "serving", "cli"):
        assert f"commuter_badge/{layer}/__init__.py" in names, f"{layer} missing from the wheel"
    assert "commuter_badge/settings.py" in names


@pytest.mark.slow  # > 10 s: make test only, not the edit loop (make test-fast)
def test_a_plain_wheel_install_works_outside_the_checkout(wheel, tmp_path):
    # given a fresh virtual environment with only the wheel installed (third-party packages are
    # lent from this environment through a .pth line, so nothing is downloaded)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    (site / "lend.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # when the package is imported and a command runs from a directory outside the checkout
    probe = (
        "import commuter_badge, commuter_badge.cli.main as m, commuter_badge.serving.service;"
        "print(commuter_badge.__file__)"
    )
    where = subprocess.run(
        [python, "-I", "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.strip()
    # then it is the wheel's copy, not the checkout's, and the CLI works end to end
    assert where.startswith(str(site)), f"imported from {where}, not from the fresh venv {site}"
    run = subprocess.run(
        [python, "-I", "-m", "commuter_badge.cli.main", "simulate", "--persons", "50"]
        + ["--as-of", "2021-10-20", "--out", "w"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [python, "-I", "-m", "commuter_badge.cli.main", "features", "--trips", "w/trips.parquet"]
        + ["--as-of", "2021-10-20", "--out", "f.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "f.csv").stat().st_size > 0


def test_the_editable_install_maps_the_same_names():
    # the development install (make) resolves each layer to its top-level folder
    import commuter_badge.features
    import commuter_badge.models
    import commuter_badge.serving

    assert Path(commuter_badge.__file__).parent == ROOT / "core"
    assert Path(commuter_badge.features.__file__).parent == ROOT / "features"
    assert Path(commuter_badge.models.__file__).parent == ROOT / "models"
    assert Path(commuter_badge.serving.__file__).parent == ROOT / "serving"


def test_no_generic_top_level_packages_are_importable_from_outside(tmp_path):
    # from a directory that is not the checkout, `features` and `models` are not ours to import
    code = "import importlib.util as u; print([n for n in ('features','models','serving','commuter') if u.find_spec(n)])"
    found = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.strip()
    assert found == "[]", f"generic top-level packages importable: {found}"
