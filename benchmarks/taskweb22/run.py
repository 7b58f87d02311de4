"""Every estimator on TaskWeb's ground truth (TaskWeb-22), with every metric and the gold's ceiling.

    .venv/bin/python benchmarks/taskweb22/run.py        # -> benchmarks/results/taskweb22_*.csv/json

Gold: TaskWeb's released transfer results (../shared/data/taskweb), t5l / finetune pair score
0.5·PC + 0.5·(0.2·PM − 0.1) as TaskWeb ranks sources; 20 targets (squad_v2 is source-only, piqa
is left out as TaskWeb does: it tuned λ on it). Each target's 21 sources are the other TaskWeb tasks.
Methods rank the shipped ``taskweb`` pool (benchmarks/taskweb22/build_pool.py) with its
``method_params`` (RoE as TaskWeb computes it from roe32.jsonl); targets are loaded by
``taskrank.taskweb`` (stsb's training data is GLUE STS-B, imdb's its answered RoE entries, quartz's
Natural-Instructions instances: see ``notes``). A source a method is not defined for (squad_v2, a
generation task, for methods that train a head) ranks last. TaskShop's TW is TaskWeb's matrix; it
never uses a transfer into the target it scores (pivots p ≠ t), so it is leave-one-target-out.

Writes (``--out``, default benchmarks/results/):
  taskweb22_methods.csv / .json   tidy per target and mean, with 95% bootstrap intervals over targets
  taskweb22_summary.csv           one row per method (same columns as transfer17_summary.csv) + notes
  taskweb22_settings.csv          the same predictions judged against every other released setting
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DIRECT = ["random", "size", "vocab", "semb", "textemb", "roe", "roe,inputs=examples", "tupate-bitfit", "tupate-lora",
          "tupate-prefix", "tupate-ensemble", "taskemb", "curvegrad", "esm-logme", "prompt-feature",
          "prompt-unigram", "prompt-flatten", "prompt-bigram", "prompt-max", "llm-similarity"]
NOT_TRANSITIVE = ("random", "size", "tupate-ensemble")


def available(pool, base, methods: list[str]) -> list[str]:
    """The methods whose artefacts the pool has for every source it can score."""
    from taskrank.resolve import leaves

    keep = []
    for m in methods:
        est = pool.estimator(m, model=base)
        ok = all(pool.store.has(e.artefact_id, base.model_id, t["fingerprint"])
                 for e in leaves([est]) for t in pool.tasks if e.supports(t["type"]))
        (keep.append(m) if ok else print(f"skipped {m}: the pool lacks its artefacts", file=sys.stderr))
    return keep


def notes(est) -> str:
    """What a method's row rests on beyond TaskWeb's own examples (see taskrank.taskweb.SUBSTITUTES)."""
    from taskrank.resolve import leaves

    members = leaves([est])
    if all(getattr(e, "inputs", None) == "taskweb" for e in members):
        return "TaskWeb's roe32 inputs for all 22 tasks"
    out = ["stsb = GLUE STS-B; imdb = its answered roe32 entries; quartz = Natural-Instructions instances"]
    if any(not e.supports("generation") for e in members):
        out.append("squad_v2 (generation) not scored: ranked last")
    return "; ".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--exclude", nargs="*", default=["piqa"])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)

    import pandas as pd

    from taskrank.evaluation import evaluate_predictions, load_gold, pool_predictions
    from taskrank.models import BaseModel
    from taskrank.reliability import with_ceiling
    from taskrank.pool import Pool
    from taskrank.store import default_cache
    from taskrank.taskweb import load_taskweb_task
    from taskrank.transfer.matrix import import_taskweb

    start = time.time()
    gold = load_gold(taskweb=args.data / "taskweb", model="t5l", adaptation="finetune")
    pool, base, cache = Pool.open("taskweb"), BaseModel(), default_cache()
    direct = available(pool, base, args.methods or DIRECT)
    methods = direct + [f"taskshop:{m}" for m in direct if m not in NOT_TRANSITIVE and "," not in m]
    methods += [m for m in ("ensemble:textemb+roe", "meanrank:textemb+roe") if {"textemb", "roe"} <= set(direct)]
    estimators = {m: pool.estimator(m, model=base) for m in methods}  # for the notes
    targets = [t for t in gold.targets if t not in set(args.exclude)]
    print(f"{len(targets)} targets, {len(methods)} methods", file=sys.stderr)
    used, _ = pool_predictions(methods, pool, None, targets, base, cache, load=lambda n: load_taskweb_task(n, args.data))
    ev = evaluate_predictions(gold, used, exclude=args.exclude, targets=targets, boot=args.boot, seed_boot=0, seed=0)
    for split in ("one", "half"):  # the gold judged against itself: one seed (or half) vs the rest
        ev = with_ceiling(ev, gold, taskweb=args.data / "taskweb", split=split)
    ev.meta.update({"seconds": round(time.time() - start, 1), "pool": "taskweb",
                    "command": "python benchmarks/taskweb22/run.py " + " ".join(argv or sys.argv[1:]),
                    "unscored": "a source a method is not defined for ranks last (score = min - 1)"})
    ev.meta["gold"] = "../shared/data/taskweb (t5l/finetune)"
    args.out.mkdir(parents=True, exist_ok=True)
    ev.save(args.out / "taskweb22_methods.csv")
    (args.out / "taskweb22_methods.predictions.csv").unlink(missing_ok=True)
    ev.save(args.out / "taskweb22_methods.json")
    tidy = ev.tidy()
    wide = tidy[tidy["target"] == "(mean)"].pivot(index="method", columns="metric", values="value")
    wide = wide.reindex(index=ev.methods, columns=ev.metrics)
    wide.insert(0, "n_targets", len(ev.meta["targets"]))
    lo = tidy[(tidy["target"] == "(mean)") & (tidy["metric"] == "ndcg_taskweb")].set_index("method")
    wide["ndcg_taskweb_lo"], wide["ndcg_taskweb_hi"] = lo["boot_lo"], lo["boot_hi"]
    wide["notes"] = [notes(estimators[m]) if m in estimators else "" for m in wide.index]
    wide.reset_index().to_csv(args.out / "taskweb22_summary.csv", index=False, float_format="%.4f")

    # the same predictions against every other released setting (no intervals)
    settings = []
    all_pairs = import_taskweb(args.data / "taskweb", None, None)
    for setting in sorted(all_pairs["setting"].unique()):
        g = load_gold(taskweb=args.data / "taskweb", model=setting.split("/")[0], adaptation=setting.split("/")[1])
        t = [x for x in targets if x in g.targets]
        if not t:
            continue
        e = evaluate_predictions(g, used[used["target"].isin(t)], exclude=args.exclude, targets=t, boot=0,
                                 seed_boot=0)
        s = e.tidy()
        s = s[s["target"] == "(mean)"].pivot(index="method", columns="metric", values="value")
        settings.append(s[["ndcg_taskweb", "regret_mean@5", "spearman"]].assign(setting=setting, n_targets=len(t)))
    pd.concat(settings).reset_index().to_csv(args.out / "taskweb22_settings.csv", index=False, float_format="%.4f")
    print(json.dumps({"out": str(args.out), "seconds": ev.meta["seconds"]}), file=sys.stderr)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 100):
        print(wide[["ndcg_taskweb", "ndcg_taskweb_lo", "ndcg_taskweb_hi", "regret_mean@5", "spearman"]]
              .sort_values("ndcg_taskweb", ascending=False).round(2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
