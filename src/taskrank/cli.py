"""The ``taskrank`` command. Bad input ends with one line on stderr and exit status 2."""

from __future__ import annotations

import functools
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Rank source tasks for intermediate-task transfer to your target task.")
pool_app = typer.Typer(no_args_is_help=True, help="Build and inspect source pools.")
app.add_typer(pool_app, name="pool")
transfer_app = typer.Typer(no_args_is_help=True, help="Ground truth: run transfer experiments and export the matrix.")
app.add_typer(transfer_app, name="transfer")


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def _user_errors() -> tuple[type[Exception], ...]:
    from .estimators import UnknownEstimator
    from .models import ModelError
    from .pool import PoolError
    from .store import ArtefactError
    from .tasks import TaskError

    return TaskError, ArtefactError, PoolError, ModelError, UnknownEstimator


def friendly(fn):
    """Turn the library's input errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as e:
            typer.echo(f"taskrank: error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _print_table(df, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), justify="right" if df[col].dtype.kind in "if" else "left")
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


def _emit(df, fmt: Format, title: str | None = None) -> None:
    if fmt is Format.json:
        typer.echo(df.to_json(orient="records"))
    elif fmt is Format.csv:
        typer.echo(df.to_csv(index=False), nl=False)
    else:
        _print_table(df, title)


@app.command()
@friendly
def rank(
    target: str = typer.Option(..., help="Target task: a CSV/TSV/JSONL/Parquet file, a folder of split files, or a Hugging Face dataset id."),
    text: Optional[str] = typer.Option(None, help="Text column (guessed when omitted)."),
    text_pair: Optional[str] = typer.Option(None, "--text-pair", help="Second text column for sentence-pair tasks."),
    label: Optional[str] = typer.Option(None, help="Label column (guessed when omitted)."),
    task_type: Optional[str] = typer.Option(None, "--type", help="classification or regression (inferred when omitted)."),
    pool: str = typer.Option("default", help="'default' (ships with taskrank) or a pool directory/URL."),
    method: str = typer.Option("textemb", help="Estimator name (see 'taskrank methods')."),
    model: str = typer.Option("default", help="Base model: 'default' (bundled all-MiniLM-L6-v2), a hub id or a path."),
    top: Optional[int] = typer.Option(None, help="Show only the best K sources."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
):
    """Rank the pool's source tasks for a target task, best first."""
    from .estimators import get_estimator
    from .models import BaseModel
    from .pool import Pool
    from .ranking import rank as rank_sources
    from .store import default_cache
    from .tasks import load_task

    task = load_task(target, text=text, text_pair=text_pair, label=label, task_type=task_type)
    source_pool = Pool.open(pool)
    estimator = get_estimator(method, model=BaseModel(model))
    result = rank_sources(task, source_pool, estimator, cache=default_cache())
    if result.excluded:
        typer.echo(f"left out {', '.join(result.excluded)}: same task as the target", err=True)
    table = result.table if top is None else result.table.head(top)
    _emit(table, fmt, title=f"sources for {task.name} by {method}")


@app.command()
@friendly
def methods(fmt: Format = typer.Option(Format.table, "--format", help="table or json.")):
    """List the estimators usable with --method."""
    import pandas as pd

    from .estimators import COMPOSITES, ESTIMATORS, method_names

    names = method_names()
    if fmt is Format.json:
        typer.echo(json.dumps(names))
        return
    summary = {**{n: c.summary for n, c in ESTIMATORS.items()}, **{f"{p}:{getattr(f, 'example', '...')}":
               getattr(f, "summary", "") for p, f in COMPOSITES.items()}}
    _emit(pd.DataFrame([{"method": n, "what": summary.get(n, "")} for n in names]), fmt)


@pool_app.command("build")
@friendly
def pool_build(
    folder: Path = typer.Argument(..., help="A folder of task folders (train/validation/test files each)."),
    out: str = typer.Option(..., help="Pool directory or fsspec URL to create or extend."),
    method: list[str] = typer.Option([], help="Estimators to prepare (default: every estimator of the default pool)."),
    model: str = typer.Option("default", help="Base model."),
):
    """Prepare every estimator's artefacts for every task in a folder (resumable)."""
    from .estimators import ESTIMATORS, get_estimator
    from .models import BaseModel
    from .pool import Pool
    from .tasks import load_task_folder

    base = BaseModel(model)
    names = method or [n for n, cls in sorted(ESTIMATORS.items()) if cls.in_default_pool]
    estimators = [get_estimator(n, model=base) for n in names]
    tasks = load_task_folder(folder)
    target = Pool(out)
    target.meta.setdefault("base_model", base.model_id)
    target.build(tasks, estimators)
    typer.echo(f"pool {out}: {len(target.tasks)} tasks, methods {', '.join(names)}", err=True)


@pool_app.command("list")
@friendly
def pool_list(
    pool: str = typer.Option("default", help="'default' or a pool directory/URL."),
    fmt: Format = typer.Option(Format.table, "--format"),
):
    """Show a pool's tasks."""
    import pandas as pd

    from .pool import Pool

    p = Pool.open(pool)
    df = pd.DataFrame([{"name": t["name"], "type": t["type"], "size": t["size"], "classes": len(t["labels"]),
                        "group": t.get("group") or "", "fingerprint": t["fingerprint"]} for t in p.tasks])
    _emit(df, fmt, title=f"pool {pool}")


def _names(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@transfer_app.command("run")
@friendly
def transfer_run(
    tasks: Path = typer.Option(..., help="Folder of task folders (sources and targets)."),
    journal: Path = typer.Option(..., help="SQLite results journal (created or resumed)."),
    workdir: Optional[Path] = typer.Option(None, help="Where intermediate source models go (default: beside the journal)."),
    sources: Optional[str] = typer.Option(None, help="Comma-separated source names (default: all tasks)."),
    targets: Optional[str] = typer.Option(None, help="Comma-separated target names (default: all tasks)."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated training seeds."),
    workers: int = typer.Option(0, help="0: in this process; N: N local worker processes (or Dask workers)."),
    cluster: Optional[str] = typer.Option(None, help="'local' for a Dask LocalCluster on 127.0.0.1, or a scheduler address."),
    model: str = typer.Option("default", help="Base model."),
    method: str = typer.Option("full", help="Tuning method for source and target training."),
    source_examples: int = typer.Option(2000), source_epochs: int = typer.Option(2),
    source_lr: float = typer.Option(1e-4),
    target_examples: int = typer.Option(1000), target_epochs: int = typer.Option(1),
    target_lr: float = typer.Option(2e-4),
    eval_examples: int = typer.Option(500), max_length: int = typer.Option(128),
    batch_size: int = typer.Option(32),
    bf16: bool = typer.Option(False, help="bf16 autocast on CPU (about 1.6x faster where the CPU has bf16)."),
):
    """Run (or resume) a transfer grid; completed runs are skipped."""
    from .tasks import load_task_folder
    from .transfer.executors import run_grid
    from .transfer.journal import Journal
    from .transfer.runner import TransferSetting, plan

    setting = TransferSetting(model=model, method=method, source_examples=source_examples,
                              source_epochs=source_epochs, source_lr=source_lr, target_examples=target_examples,
                              target_epochs=target_epochs, target_lr=target_lr, eval_examples=eval_examples,
                              batch_size=batch_size, max_length=max_length, bf16=bf16)
    runs = plan(load_task_folder(tasks), [int(s) for s in seeds.split(",")], setting, _names(sources), _names(targets))
    book = Journal(journal)
    before = len(book.keys() & {r.key for r in runs})
    typer.echo(f"{len(runs)} runs in the grid, {before} already in {journal}", err=True)
    stored = run_grid(runs, book, workdir or journal.parent / "work", workers=workers, cluster=cluster)
    typer.echo(f"recorded {stored} runs; {before + stored}/{len(runs)} done", err=True)


@transfer_app.command("export")
@friendly
def transfer_export(
    journal: Path = typer.Option(..., help="SQLite results journal."),
    out: Path = typer.Option(..., help="CSV of runs (one row per run)."),
    matrix: Optional[Path] = typer.Option(None, help="Also write the tidy (target, source) matrix CSV here."),
    heatmap: Optional[Path] = typer.Option(None, help="Also write a PC heatmap PNG here."),
):
    """Export the journal's runs, and optionally the transfer matrix and its heatmap."""
    from .transfer.journal import Journal
    from .transfer.matrix import pair_table, plot_heatmap

    if not journal.is_file():
        raise _user_errors()[0](f"{journal}: no such journal")
    runs = Journal(journal).frame()
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out, index=False)
    if matrix or heatmap:
        pairs = pair_table(runs)
        if matrix:
            pairs.to_csv(matrix, index=False)
        if heatmap:
            plot_heatmap(pairs, heatmap)
    typer.echo(f"{len(runs)} runs -> {out}", err=True)


@transfer_app.command("import")
@friendly
def transfer_import(
    runs: Path = typer.Option(..., help="A runs CSV written by 'taskrank transfer export'."),
    journal: Path = typer.Option(..., help="SQLite journal to add them to (created if missing)."),
):
    """Load exported runs into a journal, so a grid resumes from committed results."""
    import pandas as pd

    from .transfer.journal import Journal

    if not runs.is_file():
        raise _user_errors()[0](f"{runs}: no such runs file")
    stored = Journal(journal).import_frame(pd.read_csv(runs, keep_default_na=False, na_values={"value": [""]}))
    typer.echo(f"{stored} runs added to {journal}", err=True)


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="taskrank")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
