"""The promotion decisions of a scripted sequence, through the real `commuter` commands.

1% champion, 2% candidate, identical retrain, newer month, policy change, rollback: each step
runs the command on a fresh MLflow store in DIR and prints what it decided and where the
`champion` alias points afterwards. Run:
    python benchmarks/promotion_sequence.py --dir /tmp/sequence [--persons 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

AS_OF = dt.date(2021, 10, 20)
NEXT = AS_OF + dt.timedelta(days=28)


def commuter(*args: str, cwd: Path) -> tuple[int, str, float]:
    exe = str(Path(sys.executable).with_name("commuter"))
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own console script
        [exe, *args], cwd=cwd, capture_output=True, text=True, env=os.environ.copy(), check=False
    )
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - start


def line(output: str, head: str) -> str:
    return next((x[len(head) :].strip() for x in output.splitlines() if x.startswith(head)), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--persons", type=int, default=10_000)
    args = parser.parse_args()
    root = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    for name, day, seed in (("m1", AS_OF, 1), ("m2", NEXT, 2)):
        if not (root / name / "labels.csv").exists():
            n = str(args.persons)
            commuter(
                "simulate",
                "--persons",
                n,
                "--as-of",
                str(day),
                "--seed",
                str(seed),
                "--out",
                name,
                cwd=root,
            )

    def train(world: str, day: dt.date, *extra: str) -> list[str]:
        return [
            "train",
            "--trips",
            f"{world}/trips.parquet",
            "--labels",
            f"{world}/labels.csv",
            "--as-of",
            str(day),
            *extra,
        ]

    steps = [
        ("1% champion", train("m1", AS_OF)),
        ("2% candidate", train("m1", AS_OF, "--target-fpr", "0.02")),
        ("identical retrain", train("m1", AS_OF)),
        ("newer month", train("m2", NEXT)),
        ("policy change", ["promote", "2", "--policy-change", "board decision: 2% from December"]),
        ("rollback", ["rollback"]),
    ]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    print(f"{'step':18} {'exit':>4} {'version':>7} {'champion':>8} {'s':>6}  decision")
    for name, cmd in steps:
        rc, output, seconds = commuter(*cmd, cwd=root)
        version = line(output, "model version").split(" ")[0] or (
            cmd[1] if cmd[0] == "promote" else ""
        )
        decision = line(output, "promotion") or output.strip().splitlines()[-1 if rc else 0]
        champion = client.get_model_version_by_alias("commuter-badge", "champion").version
        print(f"{name:18} {rc:>4} {version:>7} {champion:>8} {seconds:6.1f}  {decision}")
    print(
        "champion_history:",
        client.get_registered_model("commuter-badge").tags.get("champion_history"),
    )
    for mv in sorted(
        client.search_model_versions("name = 'commuter-badge'"), key=lambda m: int(m.version)
    ):
        gates = {k[5:]: v for k, v in mv.tags.items() if k.startswith("gate.")}
        print(
            f"v{mv.version}: target_fpr={mv.tags.get('target_fpr')} as_of={mv.tags.get('as_of')} gates={gates}"
        )


if __name__ == "__main__":
    main()
