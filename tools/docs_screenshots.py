"""Screenshots of the documentation site's front pages, taken in headless Chromium.

    .venv/bin/python tools/docs_screenshots.py                 # build the site, check, screenshot
    .venv/bin/python tools/docs_screenshots.py --site DIR --no-screenshots   # check a built site

Opens the home page, the runbook and the HTTP API reference of a strict `mkdocs build` from
file:// (the site is built with `use_directory_urls: false` so that it reads without a server),
checks that each shows what it promises once the theme's scripts have run, and saves
docs/img/docs_<page>.png. Exit 1 when a page misses a promise (the names are printed).
The browser helpers are those of tools/mlflow_ui_screenshots.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"


def _browser():
    spec = importlib.util.spec_from_file_location(
        "mlflow_ui_screenshots", ROOT / "tools" / "mlflow_ui_screenshots.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


browser = _browser()


@dataclass(frozen=True)
class Page:
    name: str  # also the screenshot's file name: docs_<name>.png
    path: str  # inside the built site
    promises: tuple[str, ...]  # text the rendered page must show


PAGES = (
    Page("home", "index.html", ("commuter-badge", "Two commands", "make test", "Where to read on")),
    Page(
        "runbook",
        "guide/runbook.html",
        ("After an alarm", "audit draw", "--labels-out", "train", "--month", "Measured"),
    ),
    Page("api", "reference/http-api.html", ("/score", "/badge", "/reviews", "ErrorBody")),
)


def build_site(out: Path) -> Path:
    """A strict build into `out`, as `make docs` does."""
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=900,
    )
    return out


def check_pages(site: Path, out_dir: Path | None, budget_ms: int = 5_000) -> list[dict]:
    """Open every page from file://; one result per page with the promises it misses."""
    results = []
    with tempfile.TemporaryDirectory(prefix="docs-shots-") as tmp:
        for page in PAGES:
            url = (site / page.path).resolve().as_uri()
            shot = out_dir / f"docs_{page.name}.png" if out_dir else None
            text = browser.page_text(browser.browse(url, Path(tmp) / "profile", budget_ms, shot))
            missing = [p for p in page.promises if p not in text]
            results.append({"page": page.name, "url": url, "missing": missing, "chars": len(text)})
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, help="a built site (default: build one now)")
    ap.add_argument("--no-screenshots", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="docs-site-") as tmp:
        site = args.site or build_site(Path(tmp) / "site")
        results = check_pages(site, None if args.no_screenshots else IMG)
    for r in results:
        status = "ok" if not r["missing"] else "MISSING " + ", ".join(r["missing"])
        print(f"{r['page']:8} {status}")
    return 1 if any(r["missing"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
