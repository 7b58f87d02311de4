"""Pilot for a reproducible transfer17 gold (issue: a gold that survives a change of seed).

The committed grid's one-seed-vs-rest TaskWeb NDCG is 65.7: a target's source ranking from one
seed predicts the other seeds' poorly. This pilot measures what moves that number, on a few targets
(stable and unstable ones) with a fixed set of sources, before a full grid is re-run:

* evaluation size: every run is scored on nested samples of the target's validation + test rows
  (250, 500, 1,000, up to 3,000) and on the grid's own frame (<= 500 validation rows), from the
  *same* trained model, so eval size costs no extra training;
* target training: ``T1`` = the grid's recipe (1 epoch, lr 2e-4, <= 1,000 examples) and ``T2`` =
  3 epochs at lr 1e-4 on the same examples;
* number of seeds: seeds 0..3 (the source model of seed s is trained with seed s, as in the grid;
  it is shared with the grid's cache, so a later full grid reuses it).

Resumable: each finished run appends one line to ``pilot_runs.csv`` (skipped when run again).
Shards split the work by source (each source model is trained by one shard):

    python benchmarks/transfer17/pilot.py --shard 0 --shards 2 &   # and --shard 1
    python benchmarks/transfer17/pilot.py --summary               # -> results/transfer17_pilot.{csv,json}
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from taskrank.environment import finetuned_cache

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
RUNS = HERE / "pilot_runs.csv"
DATA = HERE.parent.parent.parent / "shared" / "data" / "tasks"

TARGETS = ["cr", "rte", "tweeteval-hate", "mr"]
SOURCES = ["sst2", "subj", "mpqa", "trec", "tweeteval-sentiment", "tweeteval-offensive"]
SEEDS = [0, 1, 2, 3]
VARIANTS = {"T1": {}, "T2": {"epochs": 3, "lr": 1e-4}}  # changes to the grid's target recipe
EVAL_SIZES = [250, 500, 1000, 3000]  # nested samples of validation + test ("all" = up to 3,000)
COLUMNS = ["variant", "target", "source", "seed", "metric", "grid", *[f"n{n}" for n in EVAL_SIZES],
           "n_all", "seconds"]


def jobs(shard: int, shards: int):
    """(seed, target, source or '') in seed-major order, the ones this shard owns."""
    owners = {s: i % shards for i, s in enumerate(SOURCES)}
    for seed in SEEDS:
        for ti, target in enumerate(TARGETS):
            for source in ["", *SOURCES]:
                owner = owners[source] if source else ti % shards
                if owner == shard:
                    yield seed, target, source


def done() -> set:
    if not RUNS.exists():
        return set()
    frame = pd.read_csv(RUNS, keep_default_na=False)
    return {(r.variant, r.target, r.source, int(r.seed)) for r in frame.itertuples()}


def run_shard(shard: int, shards: int, workdir: str) -> None:
    from taskrank.finetuned import TaskRef, train
    from taskrank.models import BaseModel, set_threads
    from taskrank.task_metrics import score_outputs, task_metric
    from taskrank.tasks import load_task
    from taskrank.transfer.runner import TransferSetting, target_frames
    from taskrank.tuning import fine_tune, load_encoder_state, predict

    set_threads()
    grid = TransferSetting.flat(bf16=True)  # the committed grid's setting (run.sh passes --bf16)
    tasks = {n: load_task(str(DATA / n), name=n) for n in TARGETS + SOURCES}
    finished = done()
    for seed, target_name, source_name in jobs(shard, shards):
        todo = [v for v in VARIANTS if (v, target_name, source_name, seed) not in finished]
        if not todo:
            continue
        target = tasks[target_name]
        state = None
        if source_name:
            source_dir = train(workdir, grid.source_recipe(), TaskRef.of(tasks[source_name]), seed)
            state = load_encoder_state(source_dir)
        # validation + test pooled, the nested samples' frame (the chosen recipe's eval_splits)
        _, pool = target_frames(target, replace(grid, eval_splits="validation+test", eval_examples=max(EVAL_SIZES)))
        train_frame, grid_eval = target_frames(target, grid)
        base = BaseModel(grid.model, max_length=grid.target.max_length)
        metric = task_metric(target)
        for variant in todo:
            start = time.time()
            setting = replace(grid, target=grid.target.but(**VARIANTS[variant]))
            config = setting.target_tuning(seed)
            model = fine_tune(base, target, config, train=train_frame, encoder_state=state).model
            row = {"variant": variant, "target": target_name, "source": source_name, "seed": seed, "metric": metric}
            row["grid"] = score_outputs(predict(base, target, model, grid_eval, config),
                                        target.label_ids(frame=grid_eval), metric)
            outputs = predict(base, target, model, pool, config)
            gold = target.label_ids(frame=pool)
            for n in EVAL_SIZES:
                row[f"n{n}"] = score_outputs(outputs[:n], gold[:n], metric)
            row["n_all"] = len(pool)
            row["seconds"] = round(time.time() - start, 1)
            with open(RUNS, "a", newline="") as f:  # one short line per run: an atomic append
                if f.tell() == 0:
                    f.write(",".join(COLUMNS) + "\n")
                csv.writer(f).writerow([row[c] for c in COLUMNS])
            print(f"pilot {variant} {target_name} <- {source_name or '(baseline)'} seed {seed}: "
                  f"grid {row['grid']:.4f} all {row['n3000']:.4f} ({row['seconds']} s)", flush=True)


def summary() -> None:
    """Split-seed reliability per (variant, eval size, seeds used) with taskrank's own functions."""
    from taskrank.reliability import reliability

    runs = pd.read_csv(RUNS, keep_default_na=False)
    rows, per_target = [], []
    for variant, group in runs.groupby("variant"):
        complete = group.groupby(["target", "seed"]).size()
        for column in ["grid", *[f"n{n}" for n in EVAL_SIZES]]:
            for n_seeds in range(3, len(SEEDS) + 1):
                seeds = SEEDS[:n_seeds]
                part = group[group["seed"].isin(seeds)]
                # a target counts once it has every source and its baseline for every seed used
                full = [t for t in TARGETS if all(complete.get((t, s), 0) == len(SOURCES) + 1 for s in seeds)]
                if not full:
                    continue
                table = pd.DataFrame({"target": part["target"], "source": part["source"].replace("", np.nan),
                                      "seed": part["seed"], "setting": variant, "metric": part["metric"],
                                   "value": part[column]})
                table = table[table["target"].isin(full)]
                rel = reliability(table, split="one", boot=1000)
                means = rel.per_target.drop(columns=["target", "n_sources", "n_splits"]).mean()
                rows.append({"variant": variant, "eval": column, "n_seeds": n_seeds, "targets": " ".join(full),
                             "ndcg_taskweb": means.get("ndcg_taskweb"), "spearman": means.get("spearman"),
                             "min_target_ndcg": rel.per_target["ndcg_taskweb"].min()})
                for r in rel.per_target.itertuples():
                    per_target.append({"variant": variant, "eval": column, "n_seeds": n_seeds, "target": r.target,
                                       "ndcg_taskweb": r.ndcg_taskweb, "spearman": r.spearman})
    cost = runs.groupby("variant")["seconds"].mean().round(1).to_dict()
    noise = (runs.groupby(["variant", "target", "source"])[["grid", "n3000"]].std().groupby(["variant", "target"])
             .mean().round(4).reset_index().to_dict("records"))
    out = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    out.to_csv(RESULTS / "transfer17_pilot.csv", index=False, float_format="%.4f")
    pd.DataFrame(per_target).to_csv(RESULTS / "transfer17_pilot_per_target.csv", index=False, float_format="%.4f")
    (RESULTS / "transfer17_pilot.json").write_text(json.dumps({
        "targets": TARGETS, "sources": SOURCES, "seeds": SEEDS, "variants": VARIANTS, "eval_sizes": EVAL_SIZES,
        "runs": len(runs), "mean_seconds_per_target_run": cost, "seed_std_per_target": noise,
        "note": "one seed vs the rest, TaskWeb NDCG on the pilot's 6 sources (not comparable in level "
                "with 16-source numbers; compare rows with each other)"}, indent=1))
    print(out.to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--workdir", default=finetuned_cache())
    parser.add_argument("--summary", action="store_true", help="write the reliability table from pilot_runs.csv")
    args = parser.parse_args()
    if args.summary:
        summary()
    else:
        run_shard(args.shard, args.shards, args.workdir)


if __name__ == "__main__":
    main()
