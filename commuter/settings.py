"""Where things live: embedded defaults in the working directory, overridable by environment."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict

EXPERIMENT = "commuter-badge"
MODEL_NAME = "commuter-badge"
CHAMPION_ALIAS = "champion"
BASELINE_EXPERIMENT = EXPERIMENT  # the rule baseline is logged in the same experiment, its own run


class Settings(BaseModel):
    """Resolved once per command from the environment; frozen so nothing changes it mid-run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str = "sqlite:///mlflow.db"
    decisions_path: str = "decisions.duckdb"
    api_tokens: tuple[str, ...] = ()

    @property
    def champion_uri(self) -> str:
        return f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"

    def __repr__(self) -> str:  # never print tokens
        return (
            f"Settings(tracking_uri={self.tracking_uri!r}, decisions_path={self.decisions_path!r})"
        )

    __str__ = __repr__


def load_settings() -> Settings:
    tokens = tuple(
        t.strip() for t in os.environ.get("COMMUTER_API_TOKENS", "").split(",") if t.strip()
    )
    return Settings(
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db",
        decisions_path=os.environ.get("COMMUTER_DECISIONS") or "decisions.duckdb",
        api_tokens=tokens,
    )
