"""Every estimator on taskrank's 17-task transfer matrix, with every metric.

    .venv/bin/python benchmarks/results_table.py            # -> benchmarks/results/transfer17_methods.*

Gold: ``benchmarks/transfer17/runs.csv`` (per-seed runs: the pair table is computed from it and
the seed intervals come with it), or ``--matrix`` any matrix/runs CSV. Targets are the matrix's
targets; each target's sources are the other 16 tasks that have gold for it.

Methods (default): every estimator except ``logme``/``leep``/``nce`` (they run 16 fine-tuned
models on each target: add them with ``--methods``), plus the composites ``taskshop:<m>`` for
each direct method m other than random/size/tupate-ensemble (TW = this same matrix; TaskShop never
uses a transfer *into* the target it scores, so this is leave-one-target-out),
``ensemble:textemb+roe`` and ``meanrank:textemb+roe``; ``--methods`` replaces the list.
Artefacts come from ``--pool`` (default: the shipped pool, which holds the 17 tasks; a directory
is built, resumably, from ``--tasks`` for whatever the methods need). A target that is a pool task
reuses its pool artefact where the method prepares targets as sources; others come from the user cache.

Writes (``--out``, default benchmarks/results/):
  transfer17_methods.csv       tidy: method, target ("(mean)" = average), metric, value, n,
                               boot_lo/hi (95% over targets), seed_lo/hi (95% over seeds), unit
  transfer17_methods.json      the same plus meta and every prediction
  transfer17_summary.csv       one row per method: the mean of every metric (NDCG/Regret ×100)
and, with ``--report DIR``, the HTML/Markdown report of ``taskrank report``.

Every output has the gold's split-seed ceiling as a row, "gold ceiling (1 seed vs rest)" (see
``taskrank.reliability``), after "random (expected)". ``--ceiling-only`` adds (or refreshes) just
that row in the files already in ``--out``, in seconds, without scoring any method:

    .venv/bin/python benchmarks/results_table.py --ceiling-only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def default_methods() -> list[str]:
    from taskrank.estimators import ESTIMATORS

    direct = sorted(n for n, cls in ESTIMATORS.items() if getattr(cls, "family", None) != "source-models")
    out = list(direct)
    out += [f"taskshop:{m}" for m in direct if m not in ("random", "size", "tupate-ensemble")]
    if {"textemb", "roe"} <= set(direct):
        out += ["ensemble:textemb+roe", "meanrank:textemb+roe"]
    return out


def leaf_estimators(names: list[str], model) -> dict:
    """The non-composite estimators the methods need (members of composites included), by name."""
    from taskrank.estimators import get_estimator
    from taskrank.resolve import leaves

    return {est.artefact_id: est for est in leaves(get_estimator(n, model=model) for n in names)}


def _after_random(rows: list[dict], new: list[dict], name: str) -> list[dict]:
    """``rows`` (tidy records, any old ``name`` rows dropped) with ``new`` placed as ``Evaluation.tidy``
    would place a method listed right after the random row: its means after random's means, each
    per-target row right after random's row of the same target and metric."""
    from taskrank.evaluation import RANDOM

    rows = [r for r in rows if r["method"] != name]
    last_mean = max(i for i, r in enumerate(rows) if r["method"] == RANDOM and r["target"] == "(mean)")
    per_target = {(r["target"], r["metric"]): r for r in new if r["target"] != "(mean)"}
    out = []
    for i, r in enumerate(rows):
        out.append(r)
        if i == last_mean:
            out += [n for n in new if n["target"] == "(mean)"]
        elif r["method"] == RANDOM and (r["target"], r["metric"]) in per_target:
            out.append(per_target[(r["target"], r["metric"])])
    return out


def append_ceiling(out: Path, matrix: Path, split: str = "one") -> None:
    """Add (or refresh) the ceiling rows in transfer17_summary.csv, transfer17_methods.csv and .json
    of ``out``, with the targets, sources, cut-offs and bootstrap of the evaluation saved there; the
    other rows are left byte for byte."""
    import csv

    import pandas as pd

    from taskrank.evaluation import RANDOM, load_gold
    from taskrank.reliability import CEILING, reliability

    saved = json.loads((out / "transfer17_methods.json").read_text())
    meta, name = saved["meta"], CEILING[split]
    preds = pd.DataFrame(saved["predictions"])
    sources = {t: sorted(d["source"]) for t, d in preds.groupby("target")}
    rel = reliability(load_gold(matrix).runs, split, seed=meta["seed"], ks=meta["ks"], by=meta["gold_by"],
                      perf=meta["perf"], targets=meta["targets"], sources=sources,
                      regret_baseline=meta["regret_baseline"], boot=meta["boot"], level=meta["level"])
    tidy = rel.tidy().assign(method=name, seed_lo=float("nan"), seed_hi=float("nan"))
    cols = ["method", "target", "metric", "value", "n", "boot_lo", "boot_hi", "seed_lo", "seed_hi", "unit"]
    new = json.loads(tidy[cols].to_json(orient="records", double_precision=15))

    summary = pd.read_csv(out / "transfer17_summary.csv")
    mean = {r["metric"]: r["value"] for r in new if r["target"] == "(mean)"}
    row = pd.DataFrame([{"method": name, "n_targets": len(rel.per_target), **mean}])
    summary = summary[summary["method"] != name]
    first = summary["method"] == RANDOM
    pd.concat([summary[first], row.reindex(columns=summary.columns), summary[~first]]).to_csv(
        out / "transfer17_summary.csv", index=False, float_format="%.4f")

    with open(out / "transfer17_methods.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    text = [{c: "" if r[c] is None else str(r[c]) for c in cols} for r in new if r["metric"] in {x["metric"] for x in rows}]
    with open(out / "transfer17_methods.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(_after_random(rows, text, name))

    saved["results"] = _after_random(saved["results"], new, name)
    meta["methods"] = [RANDOM, name] + [m for m in meta["methods"] if m not in (RANDOM, name)]
    meta["notes"] = [n for n in meta.get("notes", []) if not n.startswith(f"'{name}'")] + [
        f"'{name}': the gold of one training seed judged against the gold of the other seeds "
        f"({len(rel.meta['splits'])} splits): how well this gold agrees with itself"]
    (out / "transfer17_methods.json").write_text(json.dumps(saved, indent=1))
    print(f"{name}: NDCG {mean['ndcg_taskweb']:.1f}, Spearman {mean['spearman']:.3f} -> {out}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--matrix", type=Path, default=HERE / "transfer17" / "runs.csv",
                    help="runs.csv (adds seed intervals) or matrix.csv")
    ap.add_argument("--tasks", type=Path, default=REPO.parent / "shared" / "data" / "tasks")
    ap.add_argument("--pool", default="default",
                    help="'default' (the shipped pool) or a pool directory, built from --tasks where artefacts are missing")
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--exclude", nargs="*", default=[])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed-boot", type=int, default=200)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--report", type=Path, default=None, help="also write the HTML/Markdown report here")
    ap.add_argument("--ceiling-only", action="store_true",
                    help="only add the gold's split-seed ceiling row to the results already in --out")
    args = ap.parse_args(argv)
    if args.ceiling_only:
        append_ceiling(args.out, args.matrix)
        return 0

    import pandas as pd

    from taskrank.estimators.taskshop import write_transfer
    from taskrank.evaluation import EvaluationError, evaluate_predictions, load_gold, pool_predictions
    from taskrank.models import BaseModel
    from taskrank.pool import Pool
    from taskrank.reliability import with_ceiling
    from taskrank.store import default_cache
    from taskrank.tasks import load_task_folder

    start = time.time()
    try:
        gold = load_gold(args.matrix)
    except EvaluationError as e:
        print(f"results_table: {e} (has the transfer grid produced results yet? "
              "PATH=.venv/bin:$PATH bash benchmarks/transfer17/export.sh)", file=sys.stderr)
        return 2
    base = BaseModel()
    tmp = Path(tempfile.mkdtemp(prefix="taskrank-results-"))
    transfer = write_transfer(gold.pairs, tmp / "transfer.csv")  # TaskShop's TW = this matrix
    methods = args.methods or default_methods()
    methods = [f"{m},transfer={transfer}" if m.startswith("taskshop:") and "transfer=" not in m else m
               for m in methods]
    names = {m: m.split(",transfer=")[0] for m in methods}  # shown without the temporary path

    pool = Pool(args.pool) if args.pool != "default" else Pool.open("default")
    if args.pool != "default":
        tasks = load_task_folder(args.tasks)
        pool.build(tasks, list(leaf_estimators(methods, base).values()))
    in_pool = {t["name"] for t in pool.tasks}
    targets = [t for t in gold.targets if t in in_pool and t not in set(args.exclude)]
    print(f"{len(targets)} targets, {len(methods)} methods, gold {gold.origin} "
          f"({'seeds ' + str(gold.seeds) if gold.runs is not None else 'no per-seed runs'})", file=sys.stderr)
    preds, candidates = pool_predictions(methods, pool, args.tasks, targets, base, default_cache())
    preds["method"] = preds["method"].map(names)
    ev = evaluate_predictions(gold, preds, exclude=args.exclude, targets=targets, candidates=candidates,
                              boot=args.boot, seed_boot=args.seed_boot, seed=0)
    ev = with_ceiling(ev, gold)
    ev.meta.update({"methods_full": methods, "seconds": round(time.time() - start, 1),
                    "command": "python benchmarks/results_table.py " + " ".join(argv or sys.argv[1:])})
    ev.meta["gold"] = str(Path(ev.meta["gold"]).resolve().relative_to(REPO)) if str(ev.meta["gold"]).startswith(
        str(REPO)) else ev.meta["gold"]
    args.out.mkdir(parents=True, exist_ok=True)
    ev.save(args.out / "transfer17_methods.csv")
    (args.out / "transfer17_methods.predictions.csv").unlink(missing_ok=True)  # kept in the JSON
    ev.save(args.out / "transfer17_methods.json")
    tidy = ev.tidy()
    wide = tidy[tidy["target"] == "(mean)"].pivot(index="method", columns="metric", values="value")
    wide = wide.reindex(index=ev.methods, columns=ev.metrics)
    wide.insert(0, "n_targets", len(ev.meta["targets"]))
    wide.reset_index().to_csv(args.out / "transfer17_summary.csv", index=False, float_format="%.4f")
    if args.report:
        from taskrank.report import write_report

        write_report(args.report, gold, tidy, ev.predictions, ev.meta, title="taskrank: every method on transfer17")
    print(json.dumps({"out": str(args.out), "targets": len(ev.meta["targets"]), "seconds": ev.meta["seconds"]}),
          file=sys.stderr)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(wide[["ndcg_taskweb", "regret_mean@5", "regret_max@1", "rho", "spearman"]].round(3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
