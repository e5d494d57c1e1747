"""Reviews flow back as labels: a kind of commuter the month's labels got wrong (every 24/48-hour
shift worker labelled 0), granted by reviewers, is recalled after retraining on the exported reviews.

The loop as an operator runs it: `commuter train` on the wrong labels, reviews recorded in the
store, `commuter reviews export`, `commuter train --labels base.csv --labels reviews.csv` (which
says how many labels came from reviews), and both versions scored on a new simulated month.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from commuter_badge.simulate.world import simulate_world, write_world
from commuter_badge.stores.reviews import ReviewRequest, ReviewStore, local_today
from tests.conftest import AS_OF

pytestmark = pytest.mark.slow

KIND = "shift_24_48"
BIN = Path(sys.executable).parent


def commuter(*args: str) -> str:
    done = subprocess.run(
        [str(BIN / "commuter"), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"commuter {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


def recall_of_kind(version: str, world: Path, persons: pd.DataFrame, out: Path) -> float:
    commuter(
        "score", "--trips", str(world / "trips.parquet"), "--as-of", AS_OF.isoformat(),
        "--out", str(out), "--model", f"models:/commuter-badge/{version}", "--no-publish",
    )  # fmt: skip
    scores = pd.read_parquet(out).merge(persons, on="person_id")
    kind = scores[scores["archetype"] == KIND]
    assert len(kind) >= 30, f"only {len(kind)} {KIND} persons scored"
    return float(kind["badge"].mean())


def version_of(output: str) -> str:
    found = re.search(r"model version\s+(\d+)", output)
    assert found, output
    return found.group(1)


def test_granted_kind_is_recalled_after_retraining(tmp_path, monkeypatch):
    monkeypatch.setenv("COMMUTER_REVIEWS", f"sqlite:///{tmp_path / 'reviews.db'}")
    month = tmp_path / "month"
    write_world(simulate_world(persons=4000, as_of=AS_OF, seed=21), month)
    persons = pd.read_parquet(month / "persons.parquet")
    labels = pd.read_csv(month / "labels.csv", dtype={"person_id": str})
    wrong = persons.loc[persons["archetype"] == KIND, "person_id"]
    base = tmp_path / "base.csv"
    labels.assign(
        is_commuter=labels["is_commuter"].where(~labels["person_id"].isin(wrong), 0)
    ).to_csv(base, index=False)
    common = ["--trips", str(month / "trips.parquet"), "--as-of", AS_OF.isoformat()]
    common += ["--target-fpr", "0.05", "--no-promote"]
    before = version_of(commuter("train", *common, "--labels", str(base)))

    # The community offices grant the shift workers who came with proof.
    store = ReviewStore(f"sqlite:///{tmp_path / 'reviews.db'}")
    until = (local_today() + dt.timedelta(days=90)).isoformat()
    for pid in wrong:
        store.add(
            ReviewRequest.model_validate_json(
                f'{{"person_id": "{pid}", "decision": "grant", "reason": "shift rota checked",'
                f' "evidence": ["employer_letter"], "reviewer": "office-3",'
                f' "valid_until": "{until}", "as_of": "{AS_OF.isoformat()}"}}'
            )
        )
    store.close()
    exported = tmp_path / "reviews.csv"
    commuter("reviews", "export", "--out", str(exported))
    frame = pd.read_csv(exported, dtype={"person_id": str})
    assert set(frame["person_id"]) == set(wrong)
    assert (frame["is_commuter"] == 1).all()
    assert (frame["as_of"] == AS_OF.isoformat()).all()

    output = commuter("train", *common, "--labels", str(base), "--labels", str(exported))
    after = version_of(output)
    shown = re.search(r"\((\d[\d,]*) from reviews\)", output)
    assert shown, output
    assert int(shown.group(1).replace(",", "")) == len(wrong), "every review became a label"

    new_month = tmp_path / "new-month"
    write_world(simulate_world(persons=4000, as_of=AS_OF, seed=22), new_month)
    new_persons = pd.read_parquet(new_month / "persons.parquet")
    recall_before = recall_of_kind(before, new_month, new_persons, tmp_path / "before.parquet")
    recall_after = recall_of_kind(after, new_month, new_persons, tmp_path / "after.parquet")
    print(f"{KIND} recall on a new month: {recall_before:.3f} -> {recall_after:.3f}")
    assert recall_after > recall_before + 0.25, (
        f"{KIND} recall {recall_before:.3f} -> {recall_after:.3f}: the reviews did not teach it"
    )
