"""`make demo`: simulate a month, build features, train, score, serve, and ask the service once.

Runs the real `commuter` commands one after another on embedded defaults (MLflow in ./mlflow.db,
decisions in ./decisions.duckdb) and prints what each one says.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

AS_OF = "2021-10-20"  # the window holds National Day and two make-up working days (调休)


def run(*args: str) -> None:
    print(f"\n$ commuter {' '.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).with_name("commuter")), *args], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def feature_summary(features: Path, persons: Path) -> None:
    frame = pd.read_parquet(features).merge(pd.read_parquet(persons), on="person_id")
    cols = [
        "workday_coverage",
        "workday_round_trip_share",
        "entry_hour_spread",
        "offday_active_share",
        "crossings_per_active_day",
        "night_share",
    ]
    table = frame.groupby("archetype")[cols].median().round(2)
    table.insert(0, "commuter", frame.groupby("archetype")["true_commuter"].first())
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print("\nmedian features by archetype (simulation truth):")
        print(table.sort_values("commuter").to_string())


def ask_service(world: Path, port: int) -> None:
    token = secrets.token_urlsafe(16)
    env = {**os.environ, "COMMUTER_API_TOKENS": token}
    print(f"\n$ commuter serve --port {port}", flush=True)
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("commuter")), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"service exited early:\n{server.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise SystemExit("service did not become ready within 120 s")
        trips = pd.read_parquet(world / "trips.parquet")
        persons = pd.read_parquet(world / "persons.parquet")
        pid = persons.loc[persons["archetype"] == "daily_car_dawn", "person_id"].iloc[0]
        mine = trips[trips["person_id"] == pid].sort_values("ts")
        body = {
            "as_of": AS_OF,
            "persons": [
                {
                    "person_id": pid,
                    "trips": [
                        {
                            "ts": t.ts.isoformat(),
                            "direction": t.direction,
                            "mode": t.mode,
                            "site_id": t.site_id,
                            "region": t.region,
                        }
                        for t in mine.itertuples()
                    ],
                }
            ],
        }
        headers = {"Authorization": f"Bearer {token}"}
        print(f"\nPOST /score  (person {pid}, a Xianghe driver, {len(mine)} crossings on record)")
        r = httpx.post(f"{base}/score", json=body, headers=headers, timeout=30)
        print(r.status_code, json.dumps(r.json(), indent=2, ensure_ascii=False))
        ids = [pid, persons["person_id"].iloc[1], "no-such-person"]
        print(f"\nPOST /badge  {ids}")
        r = httpx.post(f"{base}/badge", json={"person_ids": ids}, headers=headers, timeout=30)
        print(r.status_code, json.dumps(r.json(), indent=2, ensure_ascii=False))
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=Path("demo"))
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()
    world = args.dir / "world"
    if args.dir.exists():
        shutil.rmtree(args.dir)
    run(
        "simulate",
        "--persons",
        str(args.persons),
        "--as-of",
        AS_OF,
        "--seed",
        str(args.seed),
        "--out",
        str(world),
    )
    features = args.dir / "features.parquet"
    run(
        "features",
        "--trips",
        str(world / "trips.parquet"),
        "--as-of",
        AS_OF,
        "--out",
        str(features),
    )
    feature_summary(features, world / "persons.parquet")
    run(
        "train",
        "--trips",
        str(world / "trips.parquet"),
        "--labels",
        str(world / "labels.csv"),
        "--as-of",
        AS_OF,
        "--target-fpr",
        "0.01",
    )
    run(
        "score",
        "--trips",
        str(world / "trips.parquet"),
        "--as-of",
        AS_OF,
        "--out",
        str(args.dir / "scores.csv"),
        "--publish",
    )
    ask_service(world, free_port())
    print("\nMLflow: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db")


if __name__ == "__main__":
    main()
