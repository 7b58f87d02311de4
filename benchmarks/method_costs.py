"""What every method costs: once per source (pool build) and per target (ranking), side by side.

    python benchmarks/method_costs.py                     # default pool, ~20 min on 2 busy cores
    python benchmarks/method_costs.py --pool taskweb --phases target --methods esm-logme textemb

Two phases, each method (or artefact family) in its own subprocess, so ``peak_rss_mb`` (ru_maxrss)
is that method's own:

* ``build`` — the one-time cost per source: ``prepare`` of one source task (``--source``, default
  sst2) for each artefact family, timed (wall and CPU), the artefact's bytes on disk, and whether
  it needs a fine-tuned source model. ESM-LogME's source fine-tuning (shared with logme/leep/nce/frozen-transfer,
  whose whole artefact it is) is timed apart from the ESM itself, from a fresh folder, and the
  model folder's bytes are the disk of logme/leep/nce/frozen-transfer. The shipped pools' mean artefact size per
  family is reported beside it.
* ``target`` — the per-target cost of ranking the pool's sources for a target that is not in the
  pool (``--targets``; the methods that tune or fine-tune the target or run every source model
  only on the first one, ``--expensive-targets``): ``prep_s`` = preparing the target side (what a
  cold user cache pays: tuning, embedding, tokenising; composites: their members'), ``warm_s`` =
  ranking with the target side cached (loading the pool's artefacts and scoring), ``cold_s`` =
  both, and per (source, target) pair ``ms_per_pair`` = cold_s / sources (the ESM paper's measure)
  and ``ms_per_pair_warm``. Constructions that share a target artefact (the five ``prompt-*``;
  ``taskemb``/``curvegrad``) tune it once in their process: the later ones report the first's
  ``prep_s`` (``prep_shared_with``). logme/leep/nce/frozen-transfer first make sure every source's fine-tuned
  model is in the cache (``--finetuned-dir``; trained there if missing, from ``TASKRANK_DATA``,
  timed as ``source_models_s``), then run every source model on the target.

Writes ``results/method_costs.json`` (meta, every row, the ESM-LogME vs LogME ratios) and
``results/method_costs.csv`` (one row per method: one-time per source, per target, ms/pair, disk
per artefact, peak RSS, TaskWeb/transfer17 NDCG from the committed ``*_summary.csv``). The
1-minute load average is recorded before and after every child: on a shared machine wall clock
follows the load; CPU seconds are the steadier measure. Not a test.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data"

# the artefact families, one representative method each (build phase), with what each needs
FAMILIES = {
    "random": ("random", "nothing"),
    "size": ("size", "the source's size"),
    "vocab": ("vocab", "tokenizer"),
    "textemb": ("textemb", "base-model embeddings"),
    "semb": ("semb", "base-model embeddings"),
    "roe": ("roe", "base-model embeddings"),
    "tupate-lora": ("tupate-lora", "LoRA tuning"),
    "tupate-bitfit": ("tupate-bitfit", "BitFit tuning"),
    "tupate-prefix": ("tupate-prefix", "prefix tuning"),
    "finetune": ("taskemb", "full fine-tuning (500 examples)"),
    "prompt": ("prompt-feature", "prompt tuning"),
    "esm-logme": ("esm-logme", "fine-tuned source model + ESM fit"),
    "llm-similarity": ("llm-similarity", "task description (LLM tokenizer)"),
}
# per method: the family whose artefact it reads (composites: their members')
METHOD_FAMILY = {
    "random": ["random"], "size": ["size"], "vocab": ["vocab"], "textemb": ["textemb"], "semb": ["semb"],
    "roe": ["roe"], "tupate-lora": ["tupate-lora"], "tupate-bitfit": ["tupate-bitfit"],
    "tupate-prefix": ["tupate-prefix"], "tupate-ensemble": ["tupate-lora", "tupate-bitfit", "tupate-prefix"],
    "taskemb": ["finetune"], "curvegrad": ["finetune"],
    **{f"prompt-{c}": ["prompt"] for c in ("feature", "unigram", "flatten", "bigram", "max")},
    "esm-logme": ["esm-logme"], "logme": ["source-models"], "leep": ["source-models"], "nce": ["source-models"],
    "frozen-transfer": ["source-models"], "llm-similarity": ["llm-similarity"],
    "taskshop:roe": ["roe"], "ensemble:textemb+roe": ["textemb", "roe"],
    "learned:roe+textemb+vocab+size+same-type": ["roe", "textemb", "vocab", "size"],
}
# the target-phase processes: methods that share a target artefact run in one process, in order
GROUPS = [
    ["random"], ["size"], ["vocab"], ["textemb"], ["semb"], ["roe", "taskshop:roe"],
    ["ensemble:textemb+roe"], ["learned:roe+textemb+vocab+size+same-type"], ["esm-logme"],
    ["tupate-lora"], ["tupate-bitfit"], ["tupate-prefix"], ["tupate-ensemble"],
    ["taskemb", "curvegrad"],
    ["prompt-feature", "prompt-unigram", "prompt-flatten", "prompt-bigram", "prompt-max"],
    ["logme"], ["leep"], ["nce"], ["frozen-transfer"], ["llm-similarity"],
]
# tune/fine-tune the target, or run every source model on it: only the first --expensive-targets
EXPENSIVE = {"tupate-lora", "tupate-bitfit", "tupate-prefix", "tupate-ensemble", "taskemb", "curvegrad",
             "prompt-feature", "prompt-unigram", "prompt-flatten", "prompt-bigram", "prompt-max",
             "logme", "leep", "nce", "frozen-transfer"}
SOURCE_MODELS = {"logme", "leep", "nce", "frozen-transfer"}


NOTES = ("per_source_s: prepare of one source (the build source); logme/leep/nce/frozen-transfer: fine-tuning "
         "its model; esm-logme: that fine-tuning + the ESM. per_target_*: the first target; cold = prep (target side) "
         "+ warm (ranking with it cached); ms_per_pair = cold / the pool's sources. logme/leep/nce/frozen-transfer "
         "score --source-model-sources sources and their warm time is scaled to the pool (extrapolated_from_sources). "
         "Composites: their members' costs. Times are wall seconds on a shared machine (see loadavg); *_cpu_s are "
         "the process's CPU seconds.")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0


# ----------------------------------------------------------------------------------------------
# children


def child_build(family: str, source: str, work: Path) -> dict:
    """Prepare one source task's artefact of ``family`` from nothing."""
    from taskrank.estimators import get_estimator
    from taskrank.finetuned import TaskRef, model_dir, train
    from taskrank.models import BaseModel
    from taskrank.store import Store
    from taskrank.tasks import load_task

    method, needs = FAMILIES[family]
    with Clock() as load:
        task = load_task(source)
        BaseModel().load()  # the base model, once per process: reported apart
    estimator = get_estimator(method)
    out = {"family": family, "method": method, "source": task.name, "needs": needs, "setup_s": load.wall}
    finetuned = work / "build-finetuned"
    if family == "esm-logme":  # its source model, timed apart: all that logme/leep/nce/frozen-transfer keep per source
        shutil.rmtree(finetuned, ignore_errors=True)
        estimator.finetuned_dir = str(finetuned)
        with Clock() as ft:
            folder = train(finetuned, estimator.recipe(), TaskRef.of(task), estimator.seed)
        out.update(finetune_s=ft.wall, finetune_cpu_s=ft.cpu, finetuned_model_bytes=folder_bytes(Path(folder)))
        assert Path(folder) == model_dir(finetuned, estimator.recipe(), TaskRef.of(task), estimator.seed)
    with Clock() as prep:
        artefact = estimator.prepare(task)
    stored = work / f"build-store-{family}"
    shutil.rmtree(stored, ignore_errors=True)
    Store(stored).save(estimator.artefact_id, estimator.model.model_id, task.fingerprint, artefact)
    out.update(prepare_s=prep.wall, prepare_cpu_s=prep.cpu, artefact_bytes=folder_bytes(stored))
    shutil.rmtree(stored, ignore_errors=True)
    if family == "esm-logme":
        out["esm_only_s"], out["esm_only_cpu_s"] = out["prepare_s"], out["prepare_cpu_s"]
        out["prepare_s"] += out["finetune_s"]
        out["prepare_cpu_s"] += out["finetune_cpu_s"]
        shutil.rmtree(finetuned, ignore_errors=True)
    return out


def child_target(methods: list[str], pool_name: str, targets: list[str], work: Path, model_sources: int) -> list[dict]:
    """Per target: prepare each method's target side (cold), then rank with it cached (warm)."""
    import numpy as np

    from taskrank.models import BaseModel
    from taskrank.pool import Pool
    from taskrank.ranking import score_sources
    from taskrank.resolve import leaves
    from taskrank.store import Store
    from taskrank.tasks import load_task

    with Clock() as load:
        BaseModel().load()
    pool = Pool.open(pool_name)
    rows = []
    for target_path in targets:
        target = load_task(target_path)
        everyone = [t for t in pool.tasks if t["fingerprint"] != target.fingerprint and t["name"] != target.name]
        keep = everyone
        if set(methods) & SOURCE_MODELS and model_sources:  # the smallest sources: their models train fastest
            keep = sorted(everyone, key=lambda t: (t["size"], t["name"]))[:model_sources]
        cache = Store(Path(tempfile.mkdtemp(dir=work, prefix="cache-")))
        shared: dict = {}  # (family artefact id) -> (artefact, prep seconds, first method)
        for name in methods:
            estimator = pool.estimator(name)
            row = {"method": name, "pool": pool_name, "target": target.name, "target_type": target.spec.type,
                   "sources": len(keep), "pool_sources": len(everyone), "setup_s": load.wall}
            try:
                prep_wall = prep_cpu = 0.0
                shared_with = []
                for member in leaves([estimator]):
                    member.check_task(target)
                    key = (member.target_artefact_id, member.model.model_id, target.fingerprint)
                    family_key = (member.artefact_id, member.target_is_source)
                    if cache.has(*key):
                        continue
                    if member.target_is_source and family_key in shared:
                        artefact, w, c, first = shared[family_key]
                        shared_with.append(first)
                    else:
                        with Clock() as prep:
                            artefact = member.prepare_target(target)
                        w, c, first = prep.wall, prep.cpu, member.name
                        shared[family_key] = (artefact, w, c, first)
                    prep_wall, prep_cpu = prep_wall + w, prep_cpu + c
                    cache.save(*key, artefact)
                if name in SOURCE_MODELS:  # every source's fine-tuned model in the cache (trained if missing)
                    sources = pool.artefacts(estimator, keep)
                    before = {p.name for p in Path(estimator._workdir(), "sources").glob("*")} if Path(
                        estimator._workdir(), "sources").exists() else set()
                    with Clock() as models:
                        for source in sources:
                            estimator._model_dir(source)
                    after = {p.name for p in Path(estimator._workdir(), "sources").glob("*")}
                    row.update(source_models_s=models.wall, source_models_cpu_s=models.cpu,
                               source_models_trained=len(after - before))
                with Clock() as warm:
                    scores = score_sources(target, pool, estimator, keep, cache)
                row.update(prep_s=prep_wall, prep_cpu_s=prep_cpu, warm_s=warm.wall, warm_cpu_s=warm.cpu,
                           prep_shared_with="+".join(sorted(set(shared_with))) or None,
                           scored=int(np.isfinite(scores).sum()))
                row["ms_per_pair_warm"] = 1e3 * row["warm_s"] / len(keep)
                if len(keep) < len(everyone):  # scoring is per source (one model each): scale to the pool
                    row["measured_warm_s"], row["measured_warm_cpu_s"] = row["warm_s"], row["warm_cpu_s"]
                    row["warm_s"] *= len(everyone) / len(keep)
                    row["warm_cpu_s"] *= len(everyone) / len(keep)
                    row["extrapolated_from_sources"] = len(keep)
                row["cold_s"] = row["prep_s"] + row["warm_s"]
                row["cold_cpu_s"] = row["prep_cpu_s"] + row["warm_cpu_s"]
                row["ms_per_pair"] = 1e3 * row["cold_s"] / len(everyone)
                row["top3"] = [keep[i]["name"] for i in np.argsort(-np.nan_to_num(scores, nan=-np.inf))[:3]]
            except Exception as e:  # a method that cannot use this target: say why, keep going
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            row["peak_rss_mb_so_far"] = peak_rss_mb()
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "top3"}), file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# the parent


def run_child(args_list: list[str], threads: int) -> dict:
    env = dict(os.environ, TASKRANK_QUIET="1", TQDM_DISABLE="1", TASKRANK_THREADS=str(threads))
    env.setdefault("TASKRANK_DATA", str(DATA / "tasks"))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args_list], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": f"child failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}",
                "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(loadavg_1min_before=load_before, loadavg_1min_after=os.getloadavg()[0],
               process_s=time.perf_counter() - started)
    return out


def shipped_disk(pool_name: str) -> dict[str, float]:
    """Mean bytes of one task's artefact (safetensors + config) per family in a shipped pool."""
    from taskrank.pool import Pool

    base = Path(Pool.open(pool_name).store.root)
    out = {}
    for folder in sorted(base.iterdir()):
        tasks = [d for model in folder.iterdir() if model.is_dir() for d in model.iterdir() if d.is_dir()]
        if tasks:
            family = folder.name.rsplit("-", 1)[0] if folder.name[-9:-8] == "-" else folder.name
            out[family] = sum(folder_bytes(t) for t in tasks) / len(tasks)
    return out


def quality() -> dict[str, dict]:
    """TaskWeb NDCG with its 95% interval and transfer17 NDCG, per method, from the committed summaries."""
    out: dict[str, dict] = {}
    for bench, cols in (("taskweb22", ("ndcg_taskweb", "ndcg_taskweb_lo", "ndcg_taskweb_hi")),
                        ("transfer17", ("ndcg_taskweb",))):
        path = HERE / "results" / f"{bench}_summary.csv"
        if not path.exists():
            continue
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                entry = out.setdefault(row["method"], {})
                for col in cols:
                    if row.get(col) not in (None, ""):
                        entry[f"{bench}_{col}"] = float(row[col])
    return out


def summary_rows(build: dict[str, dict], target_rows: list[dict], disk: dict[str, float], pool_name: str) -> list[dict]:
    """One row per method: one-time per source, per target (first target and mean over targets)."""
    q = quality()
    rows = []
    for group in GROUPS:
        for method in group:
            mine = [r for r in target_rows if r.get("method") == method and r.get("pool") == pool_name]
            ok = [r for r in mine if "error" not in r]
            families = METHOD_FAMILY[method]
            once = [build.get("esm-logme" if f == "source-models" else f) for f in families]
            per_source = per_source_cpu = None
            if all(b and "error" not in b for b in once):
                key = "finetune_s" if families == ["source-models"] else "prepare_s"
                per_source = sum(b[key] for b in once)
                per_source_cpu = sum(b[key.replace("_s", "_cpu_s")] for b in once)
            art_bytes = None
            if all(b and "error" not in b for b in once):
                art_bytes = sum(b["finetuned_model_bytes"] if f == "source-models" else b["artefact_bytes"]
                                for f, b in zip(families, once))
            needs = "; ".join(sorted({FAMILIES.get(f, (None, "fine-tuned source model"))[1] for f in families}))
            first = ok[0] if ok else {}
            qm = q.get(method, {})
            rows.append({
                "method": method, "pool": pool_name, "needs": needs,
                "fine_tuned_model": families in (["source-models"], ["esm-logme"]),
                "per_source_s": per_source, "per_source_cpu_s": per_source_cpu,
                "disk_per_source_bytes": art_bytes,
                "shipped_disk_per_source_bytes": sum(disk.get(_shipped_family(f), 0) for f in families) or None,
                "target": first.get("target"), "sources": first.get("pool_sources", first.get("sources")),
                "per_target_cold_s": first.get("cold_s"), "per_target_cold_cpu_s": first.get("cold_cpu_s"),
                "per_target_prep_s": first.get("prep_s"), "per_target_warm_s": first.get("warm_s"),
                "ms_per_pair": first.get("ms_per_pair"), "ms_per_pair_warm": first.get("ms_per_pair_warm"),
                "targets_measured": len(ok),
                "mean_cold_s": sum(r["cold_s"] for r in ok) / len(ok) if ok else None,
                "mean_warm_s": sum(r["warm_s"] for r in ok) / len(ok) if ok else None,
                "source_models_s": first.get("source_models_s"),
                "source_models_trained": first.get("source_models_trained"),
                "peak_rss_mb": first.get("peak_rss_mb"),
                "ndcg_taskweb22": qm.get("taskweb22_ndcg_taskweb"), "ndcg_taskweb22_lo": qm.get("taskweb22_ndcg_taskweb_lo"),
                "ndcg_taskweb22_hi": qm.get("taskweb22_ndcg_taskweb_hi"), "ndcg_transfer17": qm.get("transfer17_ndcg_taskweb"),
                "errors": "; ".join(f"{r['target']}: {r['error']}" for r in mine if "error" in r) or None,
            })
    return rows


def _shipped_family(family: str) -> str:
    return {"finetune": "finetune", "prompt": "prompt"}.get(family, family)


def ratios(rows: list[dict]) -> dict:
    """ESM-LogME against LogME on fine-tuned source models, in the same run, next to the paper's."""
    by = {r["method"]: r for r in rows}
    esm, ref = by.get("esm-logme"), by.get("logme")
    if not esm or not ref or esm.get("per_target_cold_s") is None or ref.get("per_target_cold_s") is None:
        return {}
    out = {
        "target": esm["target"],
        "per_target_time": ref["per_target_cold_s"] / esm["per_target_cold_s"],
        "per_target_cpu": ref["per_target_cold_cpu_s"] / esm["per_target_cold_cpu_s"],
        "scoring_time_warm": ref["per_target_warm_s"] / esm["per_target_warm_s"],
        "paper_time": 10, "paper_disk": 278,
    }
    if esm.get("disk_per_source_bytes") and ref.get("disk_per_source_bytes"):
        out["disk"] = ref["disk_per_source_bytes"] / esm["disk_per_source_bytes"]
    if ref.get("per_source_s") and esm.get("per_source_s"):
        # a user with no fine-tuned models at all: LogME fine-tunes every source at ranking time
        n = ref["sources"]
        out["cold_with_source_models_time"] = (ref["per_target_cold_s"] + n * ref["per_source_s"]) / esm["per_target_cold_s"]
    return out


def figure(csv_path: Path, png_path: Path) -> Path:
    """Quality versus cost, one point per method, from the committed CSV only: x = the per-target
    cost of ranking the pool (cold cache, wall seconds, log axis), y = NDCG on TaskWeb-22 (the gold
    that separates methods: transfer17's split-seed ceiling is near random) with its 95% bootstrap
    interval over targets.  Methods without a TaskWeb-22 score (logme/leep/nce/frozen-transfer: TaskWeb-22 ships
    no fine-tuned source models) are listed under the plot with their cost."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    scored = [r for r in rows if r["ndcg_taskweb22"] and r["per_target_cold_s"]]
    unscored = [r for r in rows if not r["ndcg_taskweb22"] and r["per_target_cold_s"]]
    groups = {  # colour by what a method needs per target, as the table in the README
        "base-model embeddings / tokenizer / nothing": "#4c72b0",
        "a fine-tuned source model (ESM-LogME: its map)": "#dd8452",
        "tunes the target (TuPaTE, TaskEmb, prompts)": "#55a868",
    }

    def group(r: dict) -> str:
        if r["fine_tuned_model"] == "True" or "fine-tuned" in r["needs"]:
            return list(groups)[1]
        return list(groups)[2] if "tuning" in r["needs"] else list(groups)[0]

    fig = Figure(figsize=(10, 6.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.07, 0.16, 0.91, 0.78])
    random_ndcg = next((float(r["ndcg_taskweb22"]) for r in scored if r["method"] == "random"), None)
    if random_ndcg is not None:
        ax.axhline(random_ndcg, color="0.6", lw=1, ls="--", zorder=0)
        ax.text(8e3, random_ndcg + 0.4, "random's NDCG", color="0.45", fontsize=8, ha="right")
    for name, colour in groups.items():
        mine = [r for r in scored if group(r) == name]
        if not mine:
            continue
        x = np.array([float(r["per_target_cold_s"]) for r in mine])
        y = np.array([float(r["ndcg_taskweb22"]) for r in mine])
        err = np.array([[yy - float(r["ndcg_taskweb22_lo"]), float(r["ndcg_taskweb22_hi"]) - yy]
                        for r, yy in zip(mine, y)]).T
        ax.errorbar(x, y, yerr=err, fmt="o", color=colour, ecolor=colour, elinewidth=1, capsize=2, alpha=0.9,
                    label=name, ms=5)
    floor = 35.0
    if unscored:  # their cost, at the bottom: no TaskWeb-22 NDCG to place them by
        xs = [float(r["per_target_cold_s"]) for r in unscored]
        ax.plot(xs, [floor + 0.8] * len(xs), "x", color=groups[list(groups)[1]], ms=7,
                label="runs every fine-tuned source model (no TaskWeb-22 score: cost only)")
    # labels: each to the right of its point, moved up or down (with a leader line) where it would
    # overlap a label already placed; widths estimated in decades of the log axis
    boxes: list[tuple[float, float, float]] = []  # (x0, x1, y) in (log10 s, NDCG)
    points: list[tuple[str, float, float]] = []
    for r in scored:  # methods that land on the same spot (prompt-flatten = prompt-bigram) share one label
        x, y = float(r["per_target_cold_s"]), float(r["ndcg_taskweb22"])
        same = next((i for i, (_, px, py) in enumerate(points) if abs(np.log10(px / x)) < 0.01 and abs(py - y) < 0.05),
                    None)
        if same is None:
            points.append((r["method"], x, y))
        else:
            points[same] = (f"{points[same][0]} = {r['method']}", *points[same][1:])
    if unscored:
        ax.annotate(", ".join(f"{r['method']} {float(r['per_target_cold_s']):.0f} s" for r in unscored),
                    (min(xs), floor + 0.8), xytext=(-8, -3), textcoords="offset points", ha="right", fontsize=7.5,
                    color="0.15")
    for label, x, y in sorted(points, key=lambda p: -p[2]):
        x0 = np.log10(x) + 0.06
        x1 = x0 + 0.052 * len(label)
        for dy in (0, -1.3, 1.3, -2.6, 2.6, -3.9, 3.9, -5.2, 5.2):
            if not any(x0 < bx1 and bx0 < x1 and abs(y + dy - by) < 1.15 for bx0, bx1, by in boxes):
                break
        boxes.append((x0, x1, y + dy))
        ax.annotate(label, (x, y), xytext=(10 ** x0, y + dy - 0.35), textcoords="data", fontsize=7.5, color="0.15",
                    arrowprops=dict(arrowstyle="-", color="0.6", lw=0.6) if dy else None)
    ax.set_ylim(floor, None)
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1e4)
    ax.set_xlabel("per-target cost: ranking the 17-source default pool, cold cache (wall s, 1 thread, log scale)")
    ax.set_ylabel("NDCG on TaskWeb-22 (95% interval over targets)")
    ax.set_title("What each method costs and what it gets (benchmarks/results/method_costs.csv)", fontsize=10)
    ax.grid(True, which="major", color="0.9")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    by = {r["method"]: r for r in rows}
    note = "One-time per-source costs (pool build) are in the README's table."
    if "esm-logme" in by and "logme" in by and by["logme"]["per_target_cold_s"]:
        e, m = by["esm-logme"], by["logme"]
        t_e, t_m = float(e["per_target_cold_s"]), float(m["per_target_cold_s"])
        b_e, b_m = float(e["disk_per_source_bytes"]), float(m["disk_per_source_bytes"])
        note += (f" ESM-LogME vs LogME: {t_e:.1f} vs {t_m:.0f} s per target ({t_m / t_e:.0f}x), "
                 f"{b_e / 1e6:.2f} vs {b_m / 1e6:.1f} MB per source ({b_m / b_e:.0f}x).")
    fig.text(0.07, 0.04, note, fontsize=8, color="0.3")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=130)
    return png_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", default="default")
    p.add_argument("--targets", nargs="+", default=[str(DATA / "tasks-extra" / t) for t in ("cola", "mrpc", "stsb")],
                   help="target tasks outside the pool (default: cola, mrpc, stsb of shared/data/tasks-extra)")
    p.add_argument("--expensive-targets", type=int, default=1,
                   help="targets for the methods that tune the target or run every source model (default 1)")
    p.add_argument("--source", default=str(DATA / "tasks" / "sst2"), help="the source task the build phase prepares")
    p.add_argument("--phases", default="build,target")
    p.add_argument("--source-model-sources", type=int, default=3,
                   help="logme/leep/nce/frozen-transfer: score this many sources (the smallest; their fine-tuned "
                        "models are trained if missing) and scale the scoring time to the whole pool; "
                        "0 = every source (default 3)")
    p.add_argument("--methods", nargs="*", help="only these methods (target phase) / families (build phase)")
    p.add_argument("--threads", type=int, default=1, help="TASKRANK_THREADS of every child (default 1: CPU seconds "
                   "then equal wall seconds on an idle core)")
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "taskrank-method-costs"))
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--name", default="method_costs", help="output file stem")
    p.add_argument("--figure", action="store_true",
                   help="only draw results/<name>.png (quality vs cost) from the committed results/<name>.csv")
    p.add_argument("--child", choices=["build", "target"], help=argparse.SUPPRESS)
    p.add_argument("--child-arg", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.figure:
        out_dir = Path(args.out_dir)
        print(f"wrote {figure(out_dir / f'{args.name}.csv', out_dir / f'{args.name}.png')}")
        return 0

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "src"))
    if args.child == "build":
        res = child_build(args.child_arg[0], args.source, work)
        res["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(res))
        return 0
    if args.child == "target":
        res = child_target(args.child_arg, args.pool, args.targets, work, args.source_model_sources)
        for r in res:
            r["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps({"rows": res}))
        return 0

    phases = set(args.phases.split(","))
    started, load_start = time.time(), os.getloadavg()[0]
    out_dir = Path(args.out_dir)
    json_path = out_dir / f"{args.name}.json"
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    build = {b["family"]: b for b in previous.get("build", []) if "family" in b}
    target_rows = [r for r in previous.get("target", [])]
    def save() -> dict:
        disk = shipped_disk(args.pool)
        table = summary_rows(build, target_rows, disk, args.pool)
        meta = {
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            "wall_s": time.time() - started, "threads": args.threads, "device": "cpu",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "loadavg_1min_at_start": load_start, "loadavg_1min_at_end": os.getloadavg()[0],
            "source": args.source, "targets": args.targets, "expensive_targets": args.expensive_targets,
            "source_model_sources": args.source_model_sources,
            "notes": NOTES,
        }
        result = {"meta": meta, "build": list(build.values()), "target": target_rows, "methods": table,
                  "shipped_disk_per_source_bytes": disk, "esm_vs_logme": ratios(table)}
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1, default=str))
        with open(out_dir / f"{args.name}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
        return result

    if "build" in phases:
        for family in FAMILIES:
            if args.methods and family not in args.methods and FAMILIES[family][0] not in args.methods:
                continue
            res = run_child(["--child", "build", "--child-arg", family, "--source", args.source,
                             "--work-dir", str(work)], args.threads)
            res.setdefault("family", family)
            build[family] = res
            print(f"build {family:14s} {res.get('prepare_s', float('nan')):8.1f} s wall "
                  f"{res.get('prepare_cpu_s', float('nan')):8.1f} s CPU  {res.get('artefact_bytes', 0):>10} B "
                  f"{res.get('error', '')}", flush=True)
            save()
    if "target" in phases:
        for group in GROUPS:
            group = [m for m in group if not args.methods or m in args.methods]
            if not group:
                continue
            targets = args.targets[: args.expensive_targets] if set(group) & EXPENSIVE else args.targets
            res = run_child(["--child", "target", "--child-arg", *group, "--pool", args.pool, "--targets", *targets,
                             "--work-dir", str(work), "--source-model-sources", str(args.source_model_sources)],
                            args.threads)
            rows = res.pop("rows", None) or [{"method": m, "pool": args.pool, "target": "?", **res} for m in group]
            for r in rows:
                r.update(loadavg_1min_before=res["loadavg_1min_before"], loadavg_1min_after=res["loadavg_1min_after"])
                target_rows = [x for x in target_rows if (x.get("method"), x.get("pool"), x.get("target")) !=
                               (r["method"], r["pool"], r["target"])] + [r]
                print(f"target {r['method']:42s} {r['target']:10s} cold {r.get('cold_s', float('nan')):8.2f} s "
                      f"(prep {r.get('prep_s', float('nan')):7.2f}) warm {r.get('warm_s', float('nan')):7.3f} s "
                      f"{r.get('ms_per_pair', float('nan')):9.1f} ms/pair {r.get('error', '')}", flush=True)
            save()

    result = save()
    print(json.dumps(result["esm_vs_logme"], indent=1))
    print(f"wrote {json_path} and .csv ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
