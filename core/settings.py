"""Every setting of the project, in one typed, frozen object read from the environment.

This is the only module that reads `os.environ` (pydantic-settings does the reading). Commands and
the service call `load_settings()` once at their start and pass what they need down; the library
layers take plain arguments. Defaults are embedded and live in the working directory (docs/contract.md §2).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EXPERIMENT = "commuter-badge"
MODEL_NAME = "commuter-badge"
CHAMPION_ALIAS = "champion"
CHAMPION_URI = f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
BASELINE_EXPERIMENT = EXPERIMENT  # the rule baseline is logged in the same experiment, its own run

# Days of history before as_of that features read; 8 to 62 allowed (a person's days are 64-bit masks).
DEFAULT_WINDOW_DAYS = 28
MIN_WINDOW_DAYS = 8
MAX_WINDOW_DAYS = 62

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_DECISIONS = "decisions.duckdb"
DEFAULT_REVIEWS = "sqlite:///reviews.db"
# The secret that turns person ids into the keys logged with validation persons (models/mlflow_edge/pseudonym.py);
# created on first use, owner-only, and never logged to MLflow.
DEFAULT_PERSON_KEY_FILE = "person.key"
# Loopback unless told otherwise: put a TLS-terminating proxy in front for other hosts (docs/guide/operations.md).
DEFAULT_HOST = "127.0.0.1"

Tokens = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """Resolved once per command or service start; frozen so nothing changes it mid-run."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", env_prefix="COMMUTER_", populate_by_name=True
    )

    tracking_uri: str = Field(DEFAULT_TRACKING_URI, validation_alias="MLFLOW_TRACKING_URI")
    decisions_path: str = Field(DEFAULT_DECISIONS, validation_alias="COMMUTER_DECISIONS")
    reviews_url: str = Field(DEFAULT_REVIEWS, validation_alias="COMMUTER_REVIEWS")
    api_tokens: Tokens = Field((), validation_alias="COMMUTER_API_TOKENS")
    reviewer_tokens: Tokens = Field((), validation_alias="COMMUTER_REVIEWER_TOKENS")
    calendar: str | None = Field(None, validation_alias="COMMUTER_CALENDAR")
    duckdb_memory: str | None = Field(None, validation_alias="COMMUTER_DUCKDB_MEMORY")
    spark_master: str | None = Field(None, validation_alias="COMMUTER_SPARK_MASTER")
    debug: bool = Field(False, validation_alias="COMMUTER_DEBUG")
    # The registry version a service's workers load; `commuter serve` sets it to the champion it
    # found at start, so a restarted worker loads that version, not whatever the alias says now.
    model_version: str | None = Field(None, validation_alias="COMMUTER_MODEL_VERSION")
    host: str = Field(DEFAULT_HOST, validation_alias="COMMUTER_HOST")
    person_key_file: str = Field(
        DEFAULT_PERSON_KEY_FILE, validation_alias="COMMUTER_PERSON_KEY_FILE"
    )
    # The pid of the server process that starts the service's workers (set by that process, see
    # `export_for_workers`); a worker exits when that process is gone (serving/workers.py).
    server_pid: int | None = Field(None, validation_alias="COMMUTER_SERVER_PID")
    # The language of person-facing text (reasons, the person's side, their errors) when a command
    # or request does not say: zh or en, checked where it is used (features/messages.py).
    lang: str = Field("en", validation_alias="COMMUTER_LANG")

    @field_validator("api_tokens", "reviewer_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator(
        "tracking_uri",
        "decisions_path",
        "reviews_url",
        "host",
        "person_key_file",
        "lang",
        mode="before",
    )
    @classmethod
    def _empty_is_default(cls, value: object, info) -> object:
        # An empty variable (`COMMUTER_DECISIONS=`) means "not set", as it did before.
        if value in ("", None):
            return cls.model_fields[info.field_name].default
        return value

    @field_validator(
        "calendar", "duckdb_memory", "spark_master", "model_version", "server_pid", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def champion_uri(self) -> str:
        return CHAMPION_URI

    def __repr__(self) -> str:  # never print tokens
        return (
            f"Settings(tracking_uri={self.tracking_uri!r}, decisions_path={self.decisions_path!r}, "
            f"reviews_url={_without_password(self.reviews_url)!r}, calendar={self.calendar!r}, "
            f"api_tokens=<{len(self.api_tokens)}>, reviewer_tokens=<{len(self.reviewer_tokens)}>)"
        )

    __str__ = __repr__


def _without_password(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


def load_settings() -> Settings:
    """The settings as the environment says now."""
    return Settings()


# The settings that name a file (or a URL holding one): relative ones mean "in the directory the
# command or the server was started in".
PATH_SETTINGS = ("tracking_uri", "decisions_path", "reviews_url", "calendar", "person_key_file")
# sqlite:///relative/file.db (three slashes and no fourth); also sqlite+driver:///...
_SQLITE_RELATIVE = re.compile(r"^(sqlite(?:\+\w+)?:///)(?!/)([^?]+)(\?.*)?$")


def absolute_location(value: str, cwd: Path) -> str:
    """A relative path, `file:` URI or `sqlite:///` URL made absolute against `cwd`; any other
    URL (postgresql://, http://, sqlite:////abs, in-memory SQLite) as it is."""
    if match := _SQLITE_RELATIVE.match(value):
        scheme, path, query = match.groups()
        if path == ":memory:":
            return value
        return f"{scheme}{cwd / path}{query or ''}"
    if value.startswith("file:") and not value.startswith("file:/"):
        return "file:" + str(cwd / value[len("file:") :])
    if "://" in value or value.startswith("file:") or value == "databricks":
        return value
    return str(cwd / Path(value).expanduser())


def absolute_paths(settings: Settings, cwd: Path | None = None) -> dict[str, str]:
    """Every path setting, defaults included, absolute against `cwd` (default: this directory),
    keyed by its environment variable: what a process started elsewhere (the service's workers,
    which run in the project root or inside a Bento) needs to open the same files as this one."""
    cwd = Path(cwd or Path.cwd()).absolute()
    out = {}
    for name in PATH_SETTINGS:
        value = getattr(settings, name)
        if value:
            out[str(Settings.model_fields[name].validation_alias)] = absolute_location(value, cwd)
    return out


def export_for_workers(cwd: Path | None = None) -> dict[str, str]:
    """In the server process, before it starts workers: every path setting made absolute against
    the directory the operator started in (`absolute_paths`), and this process's pid as
    COMMUTER_SERVER_PID, put into this process's environment, which the workers inherit."""
    exported = {**absolute_paths(load_settings(), cwd), "COMMUTER_SERVER_PID": str(os.getpid())}
    os.environ.update(exported)
    return exported
