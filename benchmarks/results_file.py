"""The one way a benchmark writes its result file: benchmarks/results/<name>.json with the date, the
commit and the machine (its load before and after), written atomically. The documentation's
performance page is generated from these files (tools/gen_docs.py), so no figure is typed by hand."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def git_commit() -> str:
    """HEAD, with `-dirty` when tracked files differ from it (figures from a tree with changes)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> dict[str, Any]:
    """What the figures were measured on; a shared machine's load average says how quiet it was."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }


class Result:
    """Opened when a benchmark starts (the machine's load then), written when it ends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.machine = machine()

    def write(self, payload: dict[str, Any], out: Path | None = None) -> Path:
        from commuter_badge.atomic import atomic_write

        out = out or RESULTS / f"{self.name}.json"
        machine = {"load_average_after": list(os.getloadavg()), **self.machine}  # kept if merged
        report = {
            "benchmark": self.name,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": {**self.machine, "load_average_after": machine["load_average_after"]},
            **payload,
        }
        text = json.dumps(report, indent=2, default=float) + "\n"
        atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        print(f"written to {out}")
        return out
