"""`commuter compare A B`: two trainings side by side, at full precision and per 10,000 persons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from commuter_badge.cli.app import app, clean_errors, out


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 2 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
@clean_errors
def compare(
    first: Annotated[
        str,
        typer.Argument(
            metavar="RUN_OR_VERSION",
            help="Run id, or model version: 3, v3, models:/commuter-badge/3.",
        ),
    ],
    second: Annotated[
        str, typer.Argument(metavar="RUN_OR_VERSION", help="The other run id or model version.")
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Also write the comparison (.md or .html).")
    ] = None,
    log: Annotated[
        bool,
        typer.Option("--log/--no-log", help="Log it to MLflow as a run of kind `comparison`."),
    ] = False,
) -> None:
    """Headline metrics (full precision, rates per 10,000), slice deltas and gates of two runs."""
    import mlflow

    from commuter_badge.atomic import atomic_write
    from commuter_badge.models import compare as cmp_module
    from commuter_badge.models import registry

    registry.configure()
    if out_file is not None:
        cmp_module.output_format(out_file)
    cmp = cmp_module.compare(first, second)
    # Piped, rich would fold the tables to 80 columns; a file or pager can take the full width.
    show = out if out.is_terminal else Console(width=240, soft_wrap=False, highlight=False)
    for line in cmp_module.sides_text(cmp):
        show.print(line)
    show.print(
        _table("headline metrics", cmp_module.headline_columns(cmp), cmp_module.headline_rows(cmp))
    )
    show.print(_table("gates", ["gate", cmp.a.label, cmp.b.label], cmp_module.gate_rows(cmp)))
    if not cmp.slices.empty:
        show.print(_table("slices", cmp_module.slice_columns(cmp), cmp_module.slice_rows(cmp)))
        show.print(cmp_module.NOTE)
    if out_file is not None:
        text = cmp_module.render(cmp, out_file)
        atomic_write(out_file, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        out.print(f"written to {out_file}")
    if log:
        registry.experiment_id()
        name = f"compare {cmp.a.label} vs {cmp.b.label}"
        with mlflow.start_run(run_name=name) as run:
            mlflow.set_tags({"kind": "comparison", "run_a": cmp.a.run_id, "run_b": cmp.b.run_id})
            mlflow.log_text(cmp_module.to_markdown(cmp), "comparison.md")
            mlflow.log_text(cmp_module.to_html(cmp), "comparison.html")
        out.print(f"logged as run {run.info.run_id} (kind comparison)")
