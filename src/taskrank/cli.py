"""The ``taskrank`` command. Bad input ends with one line on stderr and exit status 2."""

from __future__ import annotations

import functools
import json
import os
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .errors import TaskrankError
from .recipe import EVAL_EXAMPLES, MIXTURE, MIXTURE_EVAL_EXAMPLES, MIXTURE_TARGET, SOURCE, TARGET

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


class OptionError(TaskrankError):
    """An option value that cannot work (checked before any work is done)."""


def _user_errors() -> tuple[type[Exception], ...]:
    """What the CLI prints as one line: every :class:`TaskrankError` (each kind of bad input) and
    a missing file."""
    return (TaskrankError, FileNotFoundError)


DEVICE_HELP = "Where models run: auto (a GPU when one is present, else the CPU), cpu, cuda, cuda:N or mps."
POOLING_HELP = ("Base-model pooling: mean, cls, pooler (BERT's pooler output) or last (decoders' last real token); "
                "default: the model family's (mean for encoders and T5, last for decoders)")
PAIRS_HELP = "Sentence pairs as tokenizer pairs (default) or sep-joined ('a [SEP] b', as hf-dataset-selector)."


def _at_least(minimum, **options) -> None:
    """Each option (given by its Python name) must be at least ``minimum``."""
    for name, value in options.items():
        if value is not None and value < minimum:
            raise OptionError(f"--{name.replace('_', '-')} must be {minimum} or more, not {value}")


def _positive(**options) -> None:
    for name, value in options.items():
        if value is not None and not value > 0:
            raise OptionError(f"--{name.replace('_', '-')} must be more than 0, not {value}")


def _ints(value: str, option: str) -> list[int]:
    """A comma-separated list of whole numbers."""
    parts = [v.strip() for v in value.split(",") if v.strip()]
    try:
        out = [int(v) for v in parts]
    except ValueError:
        raise OptionError(f"{option} {value!r}: expected comma-separated whole numbers, e.g. 0,1,2") from None
    if not out:
        raise OptionError(f"{option} {value!r}: expected comma-separated whole numbers, e.g. 0,1,2")
    if len(set(out)) != len(out):
        raise OptionError(f"{option} {value!r}: a number is repeated")
    return out


def _model(name: str, option: str = "--model", load: bool = False, **kwargs):
    """The base model, checked before any work: a local path must be a model folder; a hub id
    must be reachable or in the local cache (no minute of retries); ``load``: load it now."""
    from . import hub
    from .models import DEFAULT_MODEL_ID, BaseModel, ModelError, resolve

    model_id = resolve(name)[0]
    local = Path(name).expanduser()
    if model_id != DEFAULT_MODEL_ID and local.exists():
        if not (local.is_dir() and (local / "config.json").is_file()):
            raise ModelError(f"{option} {name}: not a model folder (no config.json); give a Hugging Face model "
                             "folder, a hub id or 'default'")
    elif model_id != DEFAULT_MODEL_ID:
        offline = hub.offline_if_unreachable()
        if offline:
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
            except Exception:  # an id the hub library rejects, or an older library
                cached = False
            if not cached:
                raise ModelError(f"{option} {name}: not a local folder, and not in the local Hugging Face cache "
                                 f"({offline})")
    try:  # reads the model's config: its family and default pooling
        base = BaseModel(name, **{k: v for k, v in kwargs.items() if v is not None})
    except ModelError as e:
        raise ModelError(f"{option} {name}: {e}") from None
    if load:
        try:
            base.load()
        except ModelError:
            raise
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{option} {name}: cannot be loaded as a model ({first})") from None
    return base


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
    console = Console() if Console().is_terminal else Console(width=200)  # piped: do not cut columns
    for col in df.columns:
        table.add_column(str(col), justify="right" if df[col].dtype.kind in "if" else "left")
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


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
    label: Optional[str] = typer.Option(None, help="Label column (guessed when omitted): class, value, right choice (index or text) or answer."),
    choices: Optional[str] = typer.Option(None, help="Multiple choice: the column holding each example's choices (a list), or several columns joined by commas."),
    task_type: Optional[str] = typer.Option(None, "--type", help="classification, regression, multiple_choice or generation (inferred when omitted)."),
    pool: str = typer.Option("default", help="'default' or 'taskweb' (both ship with taskrank), or a pool directory/URL."),
    method: str = typer.Option("textemb", help="Estimator name (see 'taskrank methods')."),
    model: str = typer.Option("default", help="Base model: 'default' (bundled all-MiniLM-L6-v2), a hub id or a path."),
    top: Optional[int] = typer.Option(None, help="Show only the best K sources."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    pooling: Optional[str] = typer.Option(None, help=POOLING_HELP + "; a pool built with another pooling gives its own."),
    pairs: Optional[str] = typer.Option(None, help=PAIRS_HELP),
):
    """Rank the pool's source tasks for a target task, best first."""
    from .pool import Pool
    from .ranking import rank as rank_sources
    from .store import default_cache
    from .tasks import load_task

    _at_least(1, top=top)
    source_pool = Pool.open(pool)
    base = _model(model, device=device, pooling=pooling or source_pool.meta.get("pooling"),
                  pairs=pairs or source_pool.meta.get("pairs"))
    task = load_task(target, text=text, text_pair=text_pair, label=label, task_type=task_type, choices=choices)
    estimator = source_pool.estimator(method, model=base)
    result = rank_sources(task, source_pool, estimator, cache=default_cache())
    if result.excluded:
        typer.echo(f"left out {', '.join(result.excluded)}: same task as the target", err=True)
    if result.unscored:
        typer.echo(f"not scored by {method} (a task type it is not defined for; ranked last): "
                   f"{', '.join(result.unscored)}", err=True)
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
    model: str = typer.Option("default", help="Base model: 'default', a hub id or a model folder (BERT-like, T5, GPT-2/Llama-style)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    pooling: Optional[str] = typer.Option(None, help=POOLING_HELP),
    pairs: Optional[str] = typer.Option(None, help=PAIRS_HELP),
    workers: int = typer.Option(0, help="0: in this process (one worker per GPU where several are present); N: N local worker processes."),
):
    """Prepare every estimator's artefacts for every task in a folder (resumable)."""
    from .estimators import ESTIMATORS, get_estimator
    from .pool import Pool
    from .tasks import load_task_folder

    if "://" not in out:
        from .outputs import check_writable

        check_writable(out, "--out", folder=True)
    _at_least(0, workers=workers)
    base = _model(model, load=True, device=device, pooling=pooling, pairs=pairs)
    names = method or [n for n, cls in sorted(ESTIMATORS.items()) if cls.in_default_pool]
    estimators = [get_estimator(n, model=base) for n in names]
    tasks = load_task_folder(folder)
    target = Pool(out)
    target.meta.setdefault("base_model", base.model_id)
    for option, value in base.identity().items():  # what `rank` uses by default with this pool
        if target.meta.setdefault(option, value) != value:
            raise OptionError(f"--{option} {value}: pool {out} was built with {option} {target.meta[option]}; "
                              "build another pool")
    target.build(tasks, estimators, workers=workers, device=device)
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


@pool_app.command("import-esms")
@friendly
def pool_import_esms(
    folder: Optional[Path] = typer.Argument(None, help="A folder of hfselect ESM folders (config.json + model.safetensors each)."),
    out: str = typer.Option(..., help="Pool directory to create or extend."),
    from_hub: bool = typer.Option(False, "--from-hub", help="Find the ESMs as hfselect does: Hub models tagged "
                                  "embedding_space_map (and base_model:MODEL); offline, those in the Hugging Face cache."),
    model: Optional[str] = typer.Option(None, help="Only the ESMs of this base model (needed when they use several)."),
):
    """Make a pool of hf-dataset-selector's ESMs, ranked with '--method esm-logme'."""
    from .hfselect import esm_folders, hub_esm_folders, import_esms

    if (folder is None) == (not from_hub):
        raise OptionError("give either a FOLDER of ESM folders or --from-hub (one of them)")
    if "://" not in out:
        from .outputs import check_writable

        check_writable(out, "--out", folder=True)
    folders = hub_esm_folders(model) if from_hub else esm_folders(folder)
    pool = import_esms(folders, out, model=model)
    options = "".join(f" ({k} {pool.meta[k]})" for k in ("pooling", "pairs") if k in pool.meta)
    typer.echo(f"pool {out}: {len(pool.tasks)} ESMs of base model {pool.meta['base_model']}{options}; rank with "
               f"'taskrank rank --pool {out} --method esm-logme --model {pool.meta['base_model']}'", err=True)


def _transfer_setting(model: str, method: str, **options):
    """The transfer setting of the CLI's options (``source_examples``, ..., as
    ``TransferSetting.to_dict`` names them), each checked before any work."""
    from .transfer.runner import TransferSetting
    from .tuning import METHODS

    if method not in METHODS:
        raise OptionError(f"tuning method '{method}': choose from {', '.join(METHODS)}")
    _at_least(1, **{k: v for k, v in options.items() if k.endswith(("_examples", "_epochs", "_length", "_size"))})
    _positive(**{k: v for k, v in options.items() if k.endswith("_lr")})
    return TransferSetting.flat(model=model, method=method, **options)


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
    source_examples: int = typer.Option(SOURCE.examples), source_epochs: int = typer.Option(SOURCE.epochs),
    source_lr: float = typer.Option(SOURCE.lr),
    target_examples: int = typer.Option(TARGET.examples), target_epochs: int = typer.Option(TARGET.epochs),
    target_lr: float = typer.Option(TARGET.lr),
    eval_examples: int = typer.Option(EVAL_EXAMPLES),
    eval_splits: str = typer.Option("validation", help="Rows that score a target: 'validation' (else test), or "
                                    "'validation+test' pooled (larger, steadier gold)."),
    max_length: int = typer.Option(SOURCE.max_length),
    batch_size: int = typer.Option(SOURCE.batch_size),
    bf16: bool = typer.Option(SOURCE.bf16, help="bf16 autocast on CPU (about 1.6x faster where the CPU has bf16 instructions; ignored where it has none)."),
    device: str = typer.Option("auto", help=DEVICE_HELP + " Local workers get one GPU each."),
):
    """Run (or resume) a transfer grid; completed runs are skipped."""
    from .outputs import check_writable
    from .tasks import load_task_folder
    from .transfer.executors import run_grid
    from .transfer.journal import Journal
    from .transfer.runner import plan

    seed_list = _ints(seeds, "--seeds")
    setting = _transfer_setting(model, method, source_examples=source_examples, source_epochs=source_epochs,
                                source_lr=source_lr, target_examples=target_examples, target_epochs=target_epochs,
                                target_lr=target_lr, eval_examples=eval_examples, batch_size=batch_size,
                                max_length=max_length, bf16=bf16, eval_splits=eval_splits)
    _at_least(0, workers=workers)
    _model(model, device=device)
    runs = plan(load_task_folder(tasks), seed_list, setting, _names(sources), _names(targets))
    check_writable(workdir or journal.parent / "work", "--workdir", folder=True)
    book = Journal(journal)  # not SQLite, or not writable: said now, before any run
    before = len(book.keys() & {r.key for r in runs})
    typer.echo(f"{len(runs)} runs in the grid, {before} already in {journal}", err=True)
    stored = run_grid(runs, book, workdir or journal.parent / "work", workers=workers, cluster=cluster, device=device)
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
    from .outputs import Outputs, check_writable
    from .transfer.journal import Journal
    from .report import plot_heatmap
    from .transfer.matrix import pair_table

    if not journal.is_file():
        raise FileNotFoundError(f"{journal}: no such journal")
    for option, path in (("--out", out), ("--matrix", matrix), ("--heatmap", heatmap)):
        if path is not None:
            check_writable(path, option)
    targets = [p.expanduser().absolute() for p in (out, matrix, heatmap) if p is not None]
    if len(set(targets)) != len(targets):
        raise OptionError("--out, --matrix and --heatmap must be different files")
    runs = Journal(journal, readonly=True).frame()
    with Outputs("transfer export") as outputs:  # all three files, or none
        runs.to_csv(outputs.file(out), index=False)
        if matrix or heatmap:
            pairs = pair_table(runs)
            if matrix:
                pairs.to_csv(outputs.file(matrix), index=False)
            if heatmap and not pairs.empty:
                plot_heatmap(pairs, outputs.file(heatmap))
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
        raise FileNotFoundError(f"{runs}: no such runs file")
    stored = Journal(journal).import_frame(pd.read_csv(runs, keep_default_na=False, na_values={"value": [""]}))
    typer.echo(f"{stored} runs added to {journal}", err=True)


class Split(str, Enum):
    one = "one"
    half = "half"


class Ceiling(str, Enum):
    one = "one"
    half = "half"
    none = "none"


class TwBaseline(str, Enum):
    seed = "seed"
    implied = "implied"


@transfer_app.command("reliability")
@friendly
def transfer_reliability(
    matrix: Optional[Path] = typer.Option(None, help="Per-seed runs: runs.csv of 'taskrank transfer export' (with target-only runs)."),
    taskweb: Optional[Path] = typer.Option(None, help="TaskWeb's released results (folder) instead of --matrix."),
    tw_model: str = typer.Option("t5l", "--model", help="TaskWeb model (with --taskweb)."),
    adaptation: str = typer.Option("finetune", help="TaskWeb adaptation (with --taskweb)."),
    tw_baseline: TwBaseline = typer.Option(TwBaseline.seed, "--tw-baseline",
                                           help="TaskWeb's missing target-only runs: per-seed baselines reconstructed from its PC, or its implied baseline for every seed."),
    setting: Optional[str] = typer.Option(None, help="Setting to use when the runs hold several."),
    split: Split = typer.Option(Split.one, help="one: every seed vs the rest; half: random halves vs the rest."),
    splits: int = typer.Option(20, help="Random halves (with --split half; all of them if there are fewer)."),
    exclude: list[str] = typer.Option([], help="Target(s) to leave out, repeatable or comma-separated (TaskWeb leaves out piqa)."),
    gold: str = typer.Option("score", help="Pair-table column that orders the gold (score = TaskWeb's pair score)."),
    perf: str = typer.Option("mean", help="Pair-table column with the target performance (for Regret, ESM NDCG)."),
    k: list[int] = typer.Option([1, 3, 5], "--k", help="Cut-offs for Regret@k and precision@k (repeatable)."),
    boot: int = typer.Option(1000, help="Bootstrap draws over targets (0: no interval)."),
    seed: int = typer.Option(0, help="Seed of the random halves and of the bootstrap."),
    percent: bool = typer.Option(True, "--percent/--fraction", help="NDCG and Regret x100 (as the papers) or as fractions."),
    fmt: Format = typer.Option(Format.table, "--format", help="table (per target, then the mean), json or csv (tidy)."),
    out: Optional[Path] = typer.Option(None, help="Also save: .json (meta + tidy results) or .csv (tidy)."),
):
    """Split-seed ceiling of the gold: rank each target's sources by the gold of one seed (or half the
    seeds) and score that against the gold of the other seeds, with every evaluation metric."""
    from .reliability import ReliabilityError, load_seed_runs, reliability

    runs, notes, origin = load_seed_runs(matrix, taskweb, tw_model, adaptation, setting, tw_baseline.value)
    try:
        rel = reliability(runs, split.value, splits, seed, k, gold, perf, exclude=_split(exclude), boot=boot)
    except ReliabilityError as e:
        raise ReliabilityError(f"{origin}: {e}") from None
    rel.meta.update({"origin": origin, "notes": notes, "percent": percent})
    tidy = rel.tidy(percent)
    payload = {"meta": rel.meta, "results": json.loads(tidy.to_json(orient="records", double_precision=15))}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            out.write_text(json.dumps(payload, indent=1))
        else:
            tidy.to_csv(out, index=False)
        typer.echo(f"reliability -> {out}", err=True)
    if fmt is Format.json:
        typer.echo(json.dumps(payload))
    elif fmt is Format.csv:
        typer.echo(tidy.to_csv(index=False), nl=False)
    else:
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        wide = rel.wide(percent).drop(columns=["setting", "split"])
        wide[["n_sources", "n_splits"]] = wide[["n_sources", "n_splits"]].astype(object).fillna("")
        _print_table(wide, title=f"gold ceiling of {origin} (setting {rel.meta['setting']}), {split.value} vs rest, "
                           f"{len(rel.meta['splits'])} splits; mean ± {int(100 * rel.meta['level'])}% bootstrap over targets"
                           + ("; NDCG/Regret x100" if percent else ""))


# ----------------------------------------------------------------------------- evaluation, reports, mixtures


def _split(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=250)


def _print_evaluation(ev, percent: bool, per_target: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from .evaluation import RANDOM, is_scaled

    def fmt(v, metric):
        if v is None or v != v:
            return "–"
        v = 0.0 if abs(v) < 5e-12 else v  # no "-0.0" from float noise
        if is_scaled(metric) and percent:
            return f"{v:.1f}"
        return f"{v:.2f}" if metric == "rho" else f"{v:.3f}"

    tidy = ev.tidy(percent)
    summary = tidy[tidy["target"] == "(mean)"]
    methods, names = ev.methods, ev.metrics
    unit = dict(zip(tidy["metric"], tidy["unit"]))
    console = _console()
    meta = ev.meta
    scale = "NDCG and Regret x100 (as the papers print them)" if percent else "NDCG and Regret as fractions"
    console.print(f"gold: {meta['gold']} [{meta['setting']}], order by '{meta['gold_by']}', performance "
                  f"'{meta['perf']}'; {len(meta['targets'])} targets"
                  + (f" (excluded: {', '.join(meta['excluded'])})" if meta["excluded"] else "") + f"; {scale}.",
                  markup=False, highlight=False)
    for note in meta.get("notes", []):
        console.print(f"note: {note}", markup=False, highlight=False)
    by = summary.set_index(["metric", "method"])
    for kind, lo, hi, label in (("boot", "boot_lo", "boot_hi", f"{int(round(100 * meta['level']))}% CI over targets, "
                                                                 f"{meta['boot']} bootstrap draws"),
                                ("seed", "seed_lo", "seed_hi", f"{int(round(100 * meta['level']))}% CI over seeds "
                                                               f"{meta['seeds']}, {meta['seed_boot']} draws")):
        if kind == "seed" and not meta.get("seed_boot"):
            continue
        table = Table(title=escape(f"mean over targets [{label}]"))
        table.add_column("metric (unit)")
        for m in methods:
            table.add_column(escape(m), justify="right")
        for metric in names:
            cells = []
            for m in methods:
                r = by.loc[(metric, m)]
                ci = f" [{fmt(r[lo], metric)}, {fmt(r[hi], metric)}]" if r[lo] == r[lo] else ""
                cells.append(escape(fmt(r["value"], metric) + ci))
            table.add_row(f"{metric} ({unit[metric]})", *cells)
        console.print(table)
    if per_target:
        table = Table(title="per target")
        for c in ("target", "method", "n"):
            table.add_column(c)
        for metric in names:
            table.add_column(metric, justify="right")
        pt = ev.per_target
        for t in meta["targets"]:
            for m in methods:
                r = pt[(pt["target"] == t) & (pt["method"] == m)]
                if r.empty:
                    continue
                r = r.iloc[0]
                table.add_row(escape(t), escape(m), str(r["n_sources"]),
                              *[fmt(r[k] * (100 if percent and is_scaled(k) else 1), k) for k in names])
        console.print(table)
    if RANDOM in methods:
        console.print(f"'{RANDOM}': the exact expectation under a uniformly random order, not a draw.",
                      markup=False, highlight=False)


@app.command()
@friendly
def evaluate(
    matrix: Optional[Path] = typer.Option(None, help="Transfer matrix: matrix.csv (pair table) or runs.csv (per-seed runs; adds seed intervals)."),
    taskweb: Optional[Path] = typer.Option(None, help="TaskWeb's released results (folder) instead of --matrix."),
    tw_model: str = typer.Option("t5l", "--model", help="TaskWeb model of the gold (with --taskweb)."),
    adaptation: str = typer.Option("finetune", help="TaskWeb adaptation of the gold (with --taskweb)."),
    runs: Optional[Path] = typer.Option(None, help="Per-seed runs CSV (with a pair-table --matrix): seed intervals."),
    setting: Optional[str] = typer.Option(None, help="Setting to use when the matrix holds several."),
    method: list[str] = typer.Option([], help="Estimator to evaluate on --pool (repeatable)."),
    pool: str = typer.Option("default", help="Pool the methods rank ('default' or a directory)."),
    tasks: Optional[Path] = typer.Option(None, help="Folder of task folders holding the targets' data (needed with --method)."),
    base_model: str = typer.Option("default", "--base-model", help="Base model of the estimators."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    predictions: list[Path] = typer.Option([], help="CSV target,source,score[,method] (repeatable; named by file stem)."),
    exclude: list[str] = typer.Option([], help="Target(s) to leave out, repeatable or comma-separated (TaskWeb leaves out piqa)."),
    gold: str = typer.Option("score", help="Matrix column that orders the gold ranking (score = TaskWeb's pair score)."),
    perf: str = typer.Option("mean", help="Matrix column with the target performance after transfer (for Regret, ESM NDCG)."),
    k: list[int] = typer.Option([], "--k", help="Cut-offs for Regret@k and precision@k (repeatable; default 1, 3, 5)."),
    regret_baseline: bool = typer.Option(True, "--regret-baseline/--no-regret-baseline",
                                         help="Count the no-transfer baseline as a candidate in regret_max (ESM's protocol)."),
    boot: int = typer.Option(1000, help="Bootstrap draws over targets (0: no interval)."),
    seed_boot: int = typer.Option(200, help="Bootstrap draws over training seeds where per-seed runs are known (0: none)."),
    seed: int = typer.Option(0, help="Seed of both bootstraps."),
    ceiling: Ceiling = typer.Option(Ceiling.one, help="Gold's split-seed ceiling as a row where per-seed runs are known: "
                                    "one seed vs the rest, half vs half, or none."),
    percent: bool = typer.Option(True, "--percent/--fraction", help="NDCG and Regret x100 (as the papers) or as fractions."),
    per_target: bool = typer.Option(True, "--per-target/--no-per-target", help="Also print the per-target table."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv (tidy)."),
    out: Optional[Path] = typer.Option(None, help="Also save the evaluation: .json (everything) or .csv (+ .predictions.csv)."),
):
    """Judge rankings against a transfer matrix: every metric, per target and averaged, with intervals.

    Rankings come from estimators on a pool (--method) or prediction CSVs (--predictions);
    'random (expected)' is always a row (the exact expectation, not a draw).
    """
    import pandas as pd

    from .evaluation import EvaluationError, evaluate_predictions, load_gold, pool_predictions, read_predictions
    from .outputs import Outputs, check_writable

    _at_least(1, k=min(k, default=None))
    _at_least(0, boot=boot, seed_boot=seed_boot)
    if out is not None:
        check_writable(out, "--out")
    truth = load_gold(matrix=matrix, taskweb=taskweb, model=tw_model, adaptation=adaptation, runs=runs,
                      setting=setting, by=gold, perf=perf)
    most = int(truth.pairs.groupby("target")["source"].nunique().max())
    if max(k, default=0) > most:
        raise OptionError(f"--k {max(k)}: more than the {most} sources a target has in the matrix; use 1 to {most}")
    k = k or [1, 3, 5]
    excluded = _split(exclude)
    parts, candidates, targets = [], None, None
    for path in predictions:
        parts.append(read_predictions(path))
    if method:
        from .pool import Pool
        from .store import default_cache

        base = _model(base_model, "--base-model", device=device)
        if tasks is None:
            raise EvaluationError("--method needs --tasks FOLDER: the targets' data make the target-side artefacts")
        source_pool = Pool.open(pool)
        in_pool = {t["name"] for t in source_pool.tasks}
        targets = [t for t in truth.targets if t in in_pool and t not in excluded]
        if not targets:
            raise EvaluationError(f"none of the matrix's targets {truth.targets[:8]} is in pool {pool}")
        from .taskweb import taskweb_loader

        preds, candidates = pool_predictions(method, source_pool, tasks, targets, base, default_cache(),
                                             load=taskweb_loader(tasks))
        parts.insert(0, preds)
    if not parts:
        raise EvaluationError("nothing to evaluate: give --method (with --tasks) and/or --predictions CSV")
    allp = pd.concat(parts, ignore_index=True)
    dupe = [m for m in dict.fromkeys(allp["method"]) if sum(m in set(p["method"]) for p in parts) > 1]
    if dupe:
        raise EvaluationError(f"method name(s) {dupe} given twice (a --method and a predictions file stem?)")
    ev = evaluate_predictions(truth, allp, exclude=excluded, targets=targets, candidates=candidates, ks=k,
                              regret_baseline=regret_baseline, boot=boot, seed_boot=seed_boot, seed=seed)
    if ceiling is not Ceiling.none:
        from .reliability import with_ceiling

        ev = with_ceiling(ev, truth, taskweb, tw_model, adaptation, ceiling.value)
    if out is not None:
        with Outputs("--out") as outputs:  # the file and its .predictions.csv, or nothing
            written = [out.parent / p.name for p in ev.save(outputs.folder(out.parent) / out.name, percent)]
        typer.echo(f"evaluation -> {', '.join(map(str, written))}", err=True)
    if fmt is Format.json:
        typer.echo(json.dumps(ev.to_dict(percent)))
    elif fmt is Format.csv:
        typer.echo(ev.tidy(percent).to_csv(index=False), nl=False)
    else:
        _print_evaluation(ev, percent, per_target)


@app.command()
@friendly
def report(
    evaluation: Path = typer.Option(..., help="Output of 'taskrank evaluate --out' (.json, or .csv with its .predictions.csv)."),
    out: Path = typer.Option(..., help="Folder for report.html (self-contained), report.md and the PNG figures."),
    matrix: Optional[Path] = typer.Option(None, help="The transfer matrix evaluated against (matrix.csv or runs.csv)."),
    taskweb: Optional[Path] = typer.Option(None, help="TaskWeb's released results instead of --matrix."),
    tw_model: str = typer.Option("t5l", "--model", help="TaskWeb model (with --taskweb)."),
    adaptation: str = typer.Option("finetune", help="TaskWeb adaptation (with --taskweb)."),
    runs: Optional[Path] = typer.Option(None, help="Per-seed runs CSV: seed spread in the ranking plots."),
    setting: Optional[str] = typer.Option(None, help="Setting to use when the matrix holds several."),
    predictions: list[Path] = typer.Option([], help="Prediction CSV(s) for the ranking plots, if not saved with the evaluation."),
    title: str = typer.Option("taskrank report", help="Report title."),
):
    """Write an HTML report (figures embedded) and a Markdown report of an evaluation."""
    import pandas as pd

    from .evaluation import load_gold, read_evaluation, read_predictions
    from .outputs import Outputs, check_writable
    from .report import write_report

    check_writable(out, "--out", folder=True)
    for name in ("report.html", "report.md"):
        check_writable(out / name, "--out")
    tidy, preds, meta = read_evaluation(evaluation)
    truth = load_gold(matrix=matrix, taskweb=taskweb, model=tw_model, adaptation=adaptation, runs=runs,
                      setting=setting or meta.get("setting") or None, by=meta.get("gold_by", "score"),
                      perf=meta.get("perf", "mean"))
    if predictions:
        preds = pd.concat([read_predictions(p) for p in predictions], ignore_index=True)
    with Outputs("--out") as outputs:  # the pages and every figure, or nothing
        html_path, md_path = write_report(outputs.folder(out), truth, tidy, preds, meta, title=title)
    typer.echo(f"report -> {out / html_path.name}, {out / md_path.name}", err=True)


@pool_app.command("transfer")
@friendly
def pool_transfer(
    matrix: Path = typer.Option(..., help="A pair table (matrix.csv of 'taskrank transfer export --matrix')."),
    out: Path = typer.Option(..., help="Transfer table CSV to write (use it with 'taskshop:<method>,transfer=PATH'; "
                                       "taskrank never writes into its installed package)."),
    setting: Optional[str] = typer.Option(None, help="Setting to use when the matrix holds several."),
):
    """Write TaskShop's transfer table (target,source,score) from a transfer matrix."""
    import pandas as pd

    from .estimators.taskshop import write_transfer
    from .outputs import Outputs, check_writable

    check_writable(out, "--out")
    with Outputs("--out") as outputs:
        written = write_transfer(matrix, outputs.file(out), setting=setting)
        pairs = len(pd.read_csv(written))
    typer.echo(f"{pairs} transfer pairs -> {out}", err=True)


mixture_app = typer.Typer(invoke_without_command=True,
                          help="Multi-task training sets from the top-k sources of a method ('experiment': do they help?).")
app.add_typer(mixture_app, name="mixture")


@mixture_app.callback()
@friendly
def mixture(
    ctx: typer.Context,
    target: Optional[str] = typer.Option(None, help="Target task: a path, or a task name in --tasks."),
    tasks: Optional[Path] = typer.Option(None, help="Folder of task folders holding the sources' data."),
    method: str = typer.Option("roe", help="Method that ranks the pool's sources."),
    pool: str = typer.Option("default", help="Pool to rank ('default' or a directory); its tasks must be in --tasks."),
    top: int = typer.Option(5, help="Number of best sources to mix."),
    per_source: int = typer.Option(1000, help="Examples per source (seeded, stratified sample)."),
    include_target: bool = typer.Option(False, "--include-target/--no-include-target",
                                        help="Also mix in per-source examples of the target itself."),
    seed: int = typer.Option(0, help="Seed of the samples and of the row order."),
    out: Optional[Path] = typer.Option(None, help="JSONL file to write (a .meta.json manifest goes beside it)."),
    base_model: str = typer.Option("default", "--base-model", help="Base model of the method."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    text: Optional[str] = typer.Option(None, help="Target's text column (guessed when omitted)."),
    text_pair: Optional[str] = typer.Option(None, "--text-pair", help="Target's second text column (sentence pairs)."),
    label: Optional[str] = typer.Option(None, help="Target's label column (guessed when omitted)."),
    choices: Optional[str] = typer.Option(None, help="Target's choices column(s) (multiple choice)."),
    task_type: Optional[str] = typer.Option(None, "--type", help="Target's task type (inferred when omitted)."),
):
    """Write a seeded mixed training set (JSONL: text, text_pair, label as '<source>:<label>', source, type)
    from the top-k sources of a method."""
    if ctx.invoked_subcommand is not None:
        return
    if target is None or tasks is None or out is None:
        typer.echo(ctx.get_help())
        typer.echo("\ntaskrank: error: mixture needs --target, --tasks and --out", err=True)
        raise typer.Exit(2)
    from .mixture import load_sources, load_target, mixture_frame, top_sources, write_mixture
    from .outputs import Outputs, check_writable
    from .store import default_cache

    _at_least(1, top=top, per_source=per_source)
    check_writable(out, "--out")
    check_writable(out.with_name(out.name + ".meta.json"), "--out")
    base = _model(base_model, "--base-model", device=device)
    task = load_target(target, tasks, text=text, text_pair=text_pair, label=label, choices=choices,
                       task_type=task_type)
    ranking = top_sources(task, method, pool, top, base, default_cache())
    chosen = ranking["source"].tolist()
    picked = load_sources(chosen, tasks) + ([task] if include_target else [])
    frame = mixture_frame(picked, per_source, seed)
    manifest = {"target": task.name, "method": method, "pool": pool, "top": top, "per_source": per_source,
                "seed": seed, "include_target": include_target, "rows": len(frame),
                "sources": [{"source": s, "score": float(v), "rows": int((frame["source"] == s).sum())}
                            for s, v in zip(ranking["source"], ranking["score"])]}
    with Outputs("--out") as outputs:  # the JSONL and its manifest, or nothing
        write_mixture(frame, outputs.folder(out.parent) / out.name, manifest)
    typer.echo(f"{len(frame)} examples from {', '.join(chosen)}{' + ' + task.name if include_target else ''} "
               f"({method}) -> {out}", err=True)


@mixture_app.command("experiment")
@friendly
def mixture_experiment(
    target: str = typer.Option(..., help="Target task: a path, or a task name in --tasks."),
    tasks: Path = typer.Option(..., help="Folder of task folders (the pool's tasks with data)."),
    out: Path = typer.Option(..., help="Results CSV (one row per condition and seed; written as results come)."),
    method: str = typer.Option("roe", help="Method whose top-k is tested."),
    pool: str = typer.Option("default", help="Pool to rank ('default' or a directory)."),
    top: int = typer.Option(3, help="k: sources in the top-k and random-k mixtures."),
    per_source: int = typer.Option(MIXTURE.examples, help="Examples per source in every mixture."),
    target_examples: int = typer.Option(MIXTURE_TARGET.examples, help="Target training examples after the mixture."),
    eval_examples: int = typer.Option(MIXTURE_EVAL_EXAMPLES, help="Target validation examples scored."),
    mixture_epochs: int = typer.Option(MIXTURE.epochs), target_epochs: int = typer.Option(MIXTURE_TARGET.epochs),
    mixture_lr: float = typer.Option(MIXTURE.lr), target_lr: float = typer.Option(MIXTURE_TARGET.lr),
    batch_size: int = typer.Option(MIXTURE.batch_size), max_length: int = typer.Option(MIXTURE.max_length),
    seeds: str = typer.Option("0", help="Comma-separated seeds (training and the random-k draw)."),
    conditions: str = typer.Option("none,topk,random,all", help="Which of none, topk, random, all to run."),
    base_model: str = typer.Option("default", "--base-model", help="Base model (ranking and training)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    text: Optional[str] = typer.Option(None, help="Target's text column (guessed when omitted)."),
    text_pair: Optional[str] = typer.Option(None, "--text-pair", help="Target's second text column (sentence pairs)."),
    label: Optional[str] = typer.Option(None, help="Target's label column (guessed when omitted)."),
    choices: Optional[str] = typer.Option(None, help="Target's choices column(s) (multiple choice)."),
    task_type: Optional[str] = typer.Option(None, "--type", help="Target's task type (inferred when omitted)."),
):
    """Train on the top-k mixture vs all sources vs k random sources (vs none), continue on the target,
    and score the target: does the method's top-k help? CPU-sized defaults (minutes)."""
    import pandas as pd

    from .mixture import CONDITIONS, ExperimentConfig, load_sources, load_target, run_experiment, top_sources
    from .outputs import check_writable
    from .pool import Pool
    from .store import default_cache

    seed_list = _ints(seeds, "--seeds")
    _at_least(1, top=top, per_source=per_source, target_examples=target_examples, eval_examples=eval_examples,
              mixture_epochs=mixture_epochs, target_epochs=target_epochs, batch_size=batch_size, max_length=max_length)
    _positive(mixture_lr=mixture_lr, target_lr=target_lr)
    unknown = [c for c in _split([conditions]) if c not in CONDITIONS]
    if unknown or not _split([conditions]):
        raise OptionError(f"--conditions {conditions!r}: choose from {', '.join(CONDITIONS)}")
    check_writable(out, "--out")
    base = _model(base_model, "--base-model", max_length=max_length, device=device)
    task = load_target(target, tasks, text=text, text_pair=text_pair, label=label, choices=choices,
                       task_type=task_type)
    source_pool = Pool.open(pool)
    ranking = top_sources(task, method, source_pool, len(source_pool.tasks), base, default_cache())
    sources = load_sources(ranking["source"].tolist(), tasks)
    shared = {"batch_size": batch_size, "max_length": max_length}
    config = ExperimentConfig(top=top, eval_examples=eval_examples, seeds=tuple(seed_list),
                              mixture=MIXTURE.but(examples=per_source, epochs=mixture_epochs, lr=mixture_lr, **shared),
                              target=MIXTURE_TARGET.but(examples=target_examples, epochs=target_epochs, lr=target_lr,
                                                        **shared),
                              conditions=tuple(_split([conditions])))
    out.parent.mkdir(parents=True, exist_ok=True)
    done: list[dict] = []

    def keep(row):
        done.append(row)
        pd.DataFrame(done).to_csv(out, index=False)
        typer.echo(f"{row['condition']:>6} seed {row['seed']}: {row['metric']} {row['value']:.4f} "
                   f"({row['seconds']}s) {row['sources']}", err=True)

    result = run_experiment(task, sources, ranking["source"].tolist(), config, base, method=method, on_result=keep)
    if result.attrs.get("skipped_regression_sources"):
        typer.echo(f"left out regression sources: {', '.join(result.attrs['skipped_regression_sources'])}", err=True)
    _emit(result.drop(columns=["sources"]), Format.table, title=f"mixtures for {task.name}: {method} top-{top}")
    typer.echo(f"results -> {out}", err=True)


@app.command("select")
@friendly
def select_command(
    target: str = typer.Option(..., help="Target task: a path, or a task name in --tasks."),
    tasks: Path = typer.Option(..., help="Folder of task folders holding the sources' data (the pool's tasks)."),
    budget: int = typer.Option(3, help="k: how many source→target transfers to run."),
    journal: Path = typer.Option(..., help="SQLite results journal (created or resumed: finished runs are not repeated)."),
    method: str = typer.Option("textemb", help="Method that ranks the pool's sources (the static prior)."),
    pool: str = typer.Option("default", help="Pool to rank ('default', 'taskweb' or a directory); its tasks must be in --tasks."),
    strategy: str = typer.Option("gp", help="'gp': update the ranking after each result (Gaussian process over the "
                                            "transfer matrix); 'static': the method's top-k."),
    transfer: Optional[Path] = typer.Option(None, help="Transfer table (target,source,score) for the update "
                                                       "(default: the pool's TaskShop table)."),
    workdir: Optional[Path] = typer.Option(None, help="Where intermediate source models go (default: beside the journal)."),
    seed: int = typer.Option(0, help="Training seed of every run."),
    model: str = typer.Option("default", help="Base model (ranking and training)."),
    tuning: str = typer.Option("full", "--tuning", help="Tuning method for source and target training."),
    source_examples: int = typer.Option(SOURCE.examples), source_epochs: int = typer.Option(SOURCE.epochs),
    source_lr: float = typer.Option(SOURCE.lr),
    target_examples: int = typer.Option(TARGET.examples), target_epochs: int = typer.Option(TARGET.epochs),
    target_lr: float = typer.Option(TARGET.lr),
    eval_examples: int = typer.Option(EVAL_EXAMPLES), max_length: int = typer.Option(SOURCE.max_length),
    batch_size: int = typer.Option(SOURCE.batch_size),
    bf16: bool = typer.Option(SOURCE.bf16, help="bf16 autocast on CPU."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
):
    """Choose and run k transfers one after another (the target-only baseline too) and report the
    measured winner; the ranking is updated after each result. Resumable through --journal."""
    import pandas as pd

    from .estimators.taskshop import read_transfer
    from .finetuned import TaskRef
    from .mixture import load_target
    from .pool import Pool
    from .ranking import rank as rank_sources
    from .selection import select
    from .store import default_cache
    from .tasks import TaskError, load_task
    from .transfer.journal import Journal
    from .transfer.runner import Run, execute_run

    if budget < 1:
        raise TaskError(f"--budget must be at least 1, got {budget}")
    setting = _transfer_setting(model, tuning, source_examples=source_examples, source_epochs=source_epochs,
                                source_lr=source_lr, target_examples=target_examples, target_epochs=target_epochs,
                                target_lr=target_lr, eval_examples=eval_examples, batch_size=batch_size,
                                max_length=max_length, bf16=bf16)
    task = load_target(target, tasks)
    source_pool = Pool.open(pool)
    base = _model(model, device=device)
    estimator = source_pool.estimator(method, model=base)
    ranking = rank_sources(task, source_pool, estimator, cache=default_cache()).table
    have = {p.name for p in Path(tasks).iterdir() if p.is_dir()} if Path(tasks).is_dir() else set()
    if not have:
        raise TaskError(f"{tasks}: not a folder of task folders")
    lacking = [s for s in ranking["source"] if s not in have]
    ranking = ranking[ranking["source"].isin(have)]
    if lacking:
        typer.echo(f"not in {tasks} (cannot be run, left out): {', '.join(lacking)}", err=True)
    if ranking.empty:
        raise TaskError(f"none of the pool's sources has a task folder in {tasks}")
    matrix = None
    table = transfer or source_pool.method_params.get("taskshop", {}).get("transfer")
    if table is not None or pool == "default":
        matrix = read_transfer(table)
    book = Journal(journal)
    work = workdir or journal.parent / "work"
    target_ref = TaskRef.of(task)

    def run(source: Optional[str]) -> float:
        ref = TaskRef.of(load_task(Path(tasks) / source)) if source else None
        r = Run(target_ref, ref, seed, setting)
        if r.key in book.keys():
            done = book.frame()
            value = float(done.loc[done["key"] == r.key, "value"].iloc[0])
            typer.echo(f"{source or '(baseline)'}: {value:.4f} (from {journal})", err=True)
            return value
        result = execute_run(work, r, device=base.device)
        book.record(result)
        typer.echo(f"{source or '(baseline)'}: {result['metric']} {result['value']:.4f} ({result['seconds']}s)", err=True)
        return float(result["value"])

    baseline = run(None)
    chosen = select(task.name, ranking["source"].tolist(), ranking["score"].to_numpy(), budget, run, baseline,
                    matrix=matrix, strategy=strategy)
    out = chosen.table.assign(baseline=baseline)
    _emit(out[["step", "source", "static_rank", "value", "gain", "baseline"]], fmt,
          title=f"{budget} transfers to {task.name} ({method}, {strategy})")
    win = chosen.winner
    if win["value"] > baseline:
        typer.echo(f"winner: {win['source']} ({win['value']:.4f} vs {baseline:.4f} without transfer)", err=True)
    else:
        typer.echo(f"no source beat the target-only baseline ({baseline:.4f}); best tried: {win['source']} "
                   f"({win['value']:.4f})", err=True)


if __name__ == "__main__":  # pragma: no cover - python -m taskrank.cli (the console script is `app`)
    app(prog_name="taskrank")
