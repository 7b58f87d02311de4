"""Check of the reliable grid's recipe once two of its seeds were in (issue #13): T2 against L.

The first pilot (pilot.py) chose T2: targets trained 3 epochs at lr 1e-4 on <= 1,000 examples,
scored on validation + test (<= 3,000). With seeds 0 and 1 of the T2 grid done for cr and mpqa
(``grid_t2_runs.csv``), seed 0 ranks their 16 sources against seed 1 at TaskWeb NDCG 35 and 67: most
transfer effects at 1,000 target examples are under a point, the size of the seed noise. This
compares, on the same source models (seeds 0, 1), the low-data target recipe ``L``: 250 examples,
5 epochs, lr 1e-4 (1,250 example passes instead of 3,000), which makes the source matter more and
became the grid's recipe (``run.sh``; its runs are ``runs.csv``).

Per recipe and target with both seeds complete: seed 0 vs seed 1 (``taskrank.reliability``, split
"one", both directions), the spread of source effects (SD over sources of v/b - 1, seeds averaged),
the seed noise (SD over sources of the seed-0 minus seed-1 effect, / sqrt 2) and their ratio, and
seconds per run. Then, for L's targets with all five seeds in, how one-seed-vs-rest reliability
grows with the number of seeds k (the mean over every k-subset of seeds 0-4): the issue's criterion is
k = 5 (TaskWeb-NDCG >= 0.80 on average, no target below 0.60).

    python benchmarks/transfer17/pilot_lowdata.py
    # -> results/transfer17_pilot_lowdata.csv, results/transfer17_pilot_lowdata_seeds.csv
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from taskrank.reliability import reliability
from taskrank.transfer.matrix import pair_table

HERE = Path(__file__).resolve().parent
RECIPES = {"T2 (1,000 ex, 3 ep)": HERE / "grid_t2_runs.csv", "L (250 ex, 5 ep)": HERE / "runs.csv"}
OUT = HERE.parent / "results" / "transfer17_pilot_lowdata.csv"
SEEDS_OUT = HERE.parent / "results" / "transfer17_pilot_lowdata_seeds.csv"
SEEDS = (0, 1, 2, 3, 4)


def effects(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (target, source) and seed: PC of that seed alone (v_s / b_s - 1, ``pair_table``)."""
    return pd.concat({seed: pair_table(r).set_index(["target", "source"])["PC"]
                      for seed, r in runs.groupby("seed")}, axis=1)


def complete(runs: pd.DataFrame, seeds) -> pd.DataFrame:
    """The runs of ``seeds`` for the targets whose baseline and 16 sources have every one of them."""
    runs = runs[runs["seed"].isin(seeds)]
    full = [t for t, g in runs.groupby("target") if g["seed"].nunique() == len(seeds) and len(g) == 17 * len(seeds)]
    return runs[runs["target"].isin(full)]


def seed_curve(runs: pd.DataFrame) -> pd.DataFrame:
    """One seed vs the rest among k seeds, k = 2..5, averaged over every k-subset of ``SEEDS``, for
    the targets complete in ``SEEDS``."""
    runs = complete(runs, SEEDS)
    full = sorted(set(runs["target"]))
    rows = []
    for k in range(2, len(SEEDS) + 1):
        per = [reliability(runs[runs["seed"].isin(subset)], split="one").per_target.set_index("target")
               for subset in itertools.combinations(SEEDS, k)]
        mean = sum(p[["ndcg_taskweb", "spearman"]] for p in per) / len(per)
        rows += [{"target": t, "seeds": k, "subsets": len(per), "ndcg_taskweb": round(mean.loc[t, "ndcg_taskweb"] * 100, 1),
                  "spearman": round(mean.loc[t, "spearman"], 2)} for t in full]
    return pd.DataFrame(rows)


def main() -> None:
    rows = []
    loaded = {recipe: pd.read_csv(path) for recipe, path in RECIPES.items()}
    for recipe, all_runs in loaded.items():
        runs = complete(all_runs, [0, 1])
        two = sorted(set(runs["target"]))
        rel = reliability(runs, split="one").per_target.set_index("target")
        pcs = effects(runs)
        for t in two:
            e = pcs.loc[t].dropna()
            spread, noise = e.mean(axis=1).std() * 100, (e[0] - e[1]).std() / np.sqrt(2) * 100
            rows.append({"recipe": recipe, "target": t, "n_sources": len(e),
                         "ndcg_taskweb": round(rel.loc[t, "ndcg_taskweb"] * 100, 1),
                         "spearman": round(rel.loc[t, "spearman"], 2),
                         "effect_sd_pct": round(spread, 2), "seed_noise_sd_pct": round(noise, 2),
                         "signal_to_noise": round(spread / noise, 2),
                         "baseline_pct": round(runs[(runs["target"] == t) & runs["source"].isna()]["value"].mean() * 100, 1),
                         "seconds_per_run": round(runs[runs["target"] == t]["seconds"].mean(), 1)})
    table = pd.DataFrame(rows)
    table.to_csv(OUT, index=False)
    print(table.to_string(index=False))
    curve = seed_curve(loaded["L (250 ex, 5 ep)"])
    if len(curve):
        curve.to_csv(SEEDS_OUT, index=False)
        print(curve.pivot(index="target", columns="seeds", values="ndcg_taskweb").to_string())


if __name__ == "__main__":
    main()
