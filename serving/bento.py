"""A Bento per promoted version: the service, its code and one model version, built together.

`python -m commuter_badge.serving.bento [--model URI] [--out DIR]` stages a build context and runs
`bentoml build -f bentofile.yaml DIR` on it (bentofile.yaml is in the repository root). Without
`--out` the context is a private temporary directory (0700, like everything staged in it: the
process runs with umask 077), removed after the build; with `--out` it is kept:

    DIR/commuter_badge/...                          the service's packages, as installed
    DIR/commuter_badge/serving/bundled_model/model  the version's MLflow model directory
    DIR/commuter_badge/serving/bundled_model/bundle.json   which version that is, and from where
    DIR/requirements.txt                            the version's pinned requirements, mlflow

Inside a Bento the service finds `bundled_model/` next to this module and serves that version
(`bundled_model()`), without a tracking store; in the checkout the directory never exists, so
`commuter serve` serves the registry's version as before. `bentoml serve <tag>` of the Bento from
any directory gives the same `/score` answers as `commuter serve` on that version. Before staging,
the version is loaded with this code, so a version this code cannot score is refused here, with
the code version to deploy, instead of failing in production.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow

from commuter_badge.atomic import atomic_write
from commuter_badge.errors import CommuterError
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.mlflow_edge.packaging import MODEL_PACKAGES, lay_out, package_dirs
from commuter_badge.settings import CHAMPION_URI, MODEL_NAME, load_settings

BUNDLE_DIR = Path(__file__).resolve().parent / "bundled_model"
BUNDLE_INFO = "bundle.json"
BENTO_PACKAGES = (*MODEL_PACKAGES, "commuter_badge.stores", "commuter_badge.serving")
STAGED_MARK = ".commuter-bento"  # only a directory carrying it is ever replaced by `stage`
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class BentoError(CommuterError, RuntimeError):
    """A Bento cannot be staged or built as asked."""


def bundled_model() -> tuple[str, str] | None:
    """(model directory, registry version) when running inside a Bento, else None."""
    info = BUNDLE_DIR / BUNDLE_INFO
    if not info.is_file():
        return None
    return str(BUNDLE_DIR / "model"), str(json.loads(info.read_text())["version"])


def stage(out: Path, model_uri: str | None = None) -> dict:
    """Lay out the build context for one model version (default: the champion) in `out`."""
    uri = model_uri or CHAMPION_URI
    version = registry.resolve_version(uri)
    if not version:
        raise BentoError(f"{uri}: a Bento needs a registry version (models:/{MODEL_NAME}/N)")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / STAGED_MARK).exists():
        raise BentoError(f"{out} is not empty; give a new or empty directory for the build context")
    lay_out(out, package_dirs(BENTO_PACKAGES))
    (out / STAGED_MARK).touch()
    target = out / "commuter_badge" / "serving" / BUNDLE_DIR.name
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=str(target / "model")
        )
    )
    if local != target / "model":  # MLflow puts a models:/ download straight into dst_path
        raise BentoError(f"model version {version} was downloaded to {local}, not {target}/model")
    model = registry.load_model(str(local), version=version)  # refuses other features
    # The version's own pinned requirements, and full mlflow: the service opens a tracking store
    # and the reviews store (SQLAlchemy, Alembic). `bentoml build` adds its own bentoml pin.
    requirements = (local / "requirements.txt").read_text().split()
    if not any(r.startswith("mlflow==") for r in requirements):
        requirements.append(f"mlflow=={installed_version('mlflow')}")
    atomic_write(out / "requirements.txt", lambda p: p.write_text("\n".join(requirements) + "\n"))
    info = {
        "name": MODEL_NAME,
        "version": version,
        "source": uri,
        "run_id": model.meta.run_id,
        "code": model.meta.extra.get("code", {}),
    }
    atomic_write(target / BUNDLE_INFO, lambda p: p.write_text(json.dumps(info, indent=2)))
    return info


def build(context: Path, bentofile: Path, version: str) -> tuple[str, float]:
    """`bentoml build` on a staged context; returns the Bento tag and the seconds it took."""
    bentoml = Path(sys.executable).with_name("bentoml")
    argv = [str(bentoml) if bentoml.exists() else "bentoml", "build", "-f", str(bentofile)]
    argv += ["--label", f"model_version={version}", "-o", "tag", str(context)]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BentoError(f"bentoml build failed: {(done.stderr or done.stdout).strip()[-2000:]}")
    # `-o tag` prints `__tag__:name:version` as its last line
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return tag, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model URI (default: the champion)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="stage the context here and keep it (default: a private temporary directory, "
        "removed after the build)",
    )
    parser.add_argument("--bentofile", type=Path, default=PROJECT_ROOT / "bentofile.yaml")
    parser.add_argument("--no-build", action="store_true", help="stage the context only")
    args = parser.parse_args(argv)
    if args.no_build and args.out is None:
        parser.error("--no-build needs --out DIR, the directory to keep the staged context in")
    os.umask(0o077)  # the staged model and code, and the Bento built from them: owner-only
    registry.configure(load_settings().tracking_uri)
    try:
        with contextlib.ExitStack() as stack:
            out = args.out
            if out is None:  # mkdtemp: 0700, removed on the way out, built or not
                out = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="commuter-bento-"))
                )
            info = stage(out, args.model)
            kept = "" if args.out is not None else " (removed after the build)"
            print(f"staged model version {info['version']} in {out}{kept}")
            if not args.no_build:
                tag, seconds = build(out, args.bentofile, info["version"])
                print(f"built Bento {tag} in {seconds:.1f} s")
    except CommuterError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
