"""Selection with a budget of k real transfers, simulated on both gold matrices.

    .venv/bin/python benchmarks/budget.py      # -> benchmarks/results/<bench>_budget.csv (+ _budget_grid.csv)

A practitioner runs k source→target transfers and keeps the best. Simulation: a "run" of (s, t)
reveals the gold pair score of that pair (the units of a transfer table); the selector may use the
rest of the matrix, never the target's own row or column. Regret after k runs = (best target
performance over all sources and the no-transfer baseline − best performance among the k tried) /
that best, ×100 (the ESM paper's Regret@k, ``regret_max``), averaged over targets, with a 95%
percentile bootstrap over targets (same resamples for every method).

Static rankings (``static:<m>``: try the top-k of m) and their adaptive versions (``gp:<m>``:
:class:`taskrank.selection.GPSelector`, first pick = the static top-1, then expected improvement
under a Gaussian process whose covariance comes from the matrix) for m in

* ``learned:...``: the learned ranker, leave-one-target-out, and ``learned:... (trained on <other>)``
  (``results/learned_predictions.csv``, written by ``benchmarks/learned.py``);
* the benchmark's best method of the table by NDCG and the best by Regret@3 (the static ranking a
  practitioner would pick), ``taskshop:roe``, and ``prior`` (each source's mean standardised
  transfer to the other targets of the matrix: no method at all).

``--grid`` adds the GP's sensitivity to its three settings (rho, shrink, acquisition), written to
``<bench>_budget_grid.csv``; the defaults of GPSelector were fixed from it (see the README).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from learned import RESULTS, Bench, benchmarks  # noqa: E402

KS = (1, 2, 3, 4, 5)


def prior_predictions(bench: Bench) -> pd.DataFrame:
    """Each source's mean standardised transfer to the other tasks (the matrix without the target)."""
    from taskrank.estimators.learned import TransferPrior

    full = TransferPrior(bench.gold.pairs[["target", "source", "score"]])
    rows = []
    for t in bench.targets:
        srcs = bench.labels[bench.labels["target"] == t]["source"].tolist()
        p, _ = full.without(t).terms(t, srcs, [], 1.0)
        rows.append(pd.DataFrame({"method": "prior", "target": t, "source": srcs, "score": p}))
    return pd.concat(rows, ignore_index=True)


def static_rankings(bench: Bench, learned_path: Path) -> tuple[pd.DataFrame, list[str]]:
    from taskrank.evaluation import evaluate_predictions

    preds = [bench.preds, prior_predictions(bench)]
    names = []
    if learned_path.is_file():
        lp = pd.read_csv(learned_path)
        lp = lp[lp["bench"] == bench.name]  # leave-one-target-out, and trained on the other gold
        preds.append(lp[["method", "target", "source", "score"]])
        names += sorted(lp["method"].unique())
    preds = pd.concat(preds, ignore_index=True)
    table = [m for m in bench.methods if m != "random" and not m.startswith(("gold ceiling", "learned:"))]
    ev = evaluate_predictions(bench.gold, bench.preds[bench.preds["method"].isin(table)], targets=bench.targets,
                              boot=0, seed_boot=0)
    summ = ev.summary.set_index(["metric", "method"])["mean"].drop("random (expected)", level="method")
    best = [summ["ndcg_taskweb"].idxmax(), summ["regret_max@3"].idxmin()]  # by NDCG; by Regret@3
    names += list(dict.fromkeys(best + [m for m in ("taskshop:roe",) if m in bench.methods] + ["prior"]))
    return preds, names


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", nargs="*", default=None)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--grid", action="store_true", help="also the GP's sensitivity to its settings")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    from taskrank.selection import simulate

    start = time.time()
    spec_all = benchmarks()
    names = args.bench or [n for n, s in spec_all.items() if Path(s["preds"]).is_file()]
    for bname in names:
        bench = Bench(bname, spec_all[bname])
        preds, rankers = static_rankings(bench, args.out / "learned_predictions.csv")
        strategies = {}
        for m in rankers:
            strategies[f"static:{m}"] = (m, "static", {})
            strategies[f"gp:{m}"] = (m, "gp", {})
        per, summ = simulate(bench.gold, preds, strategies, ks=KS, targets=bench.targets, boot=args.boot)
        summ.to_csv(args.out / f"{bname}_budget.csv", index=False, float_format="%.4f")
        per.to_csv(args.out / f"{bname}_budget_per_target.csv", index=False, float_format="%.6f")
        print(f"== {bname} ({len(bench.targets)} targets) {time.time() - start:.0f}s", file=sys.stderr)
        wide = summ.pivot(index="method", columns="k", values="regret")
        at3 = summ[summ["k"] == 3].set_index("method")
        wide["k=3 interval"] = [f"[{at3.loc[m, 'lo']:.2f}, {at3.loc[m, 'hi']:.2f}]" for m in wide.index]
        print(wide.round(2).to_string())
        if args.grid:
            grid = {}
            for m in rankers:
                for rho in (0.3, 0.5, 0.7):
                    for shrink in (0.1, 0.3, 0.6):
                        for acq in ("ei", "mean"):
                            grid[f"gp:{m} rho={rho} shrink={shrink} {acq}"] = (
                                m, "gp", {"rho": rho, "shrink": shrink, "acquisition": acq})
            _, gs = simulate(bench.gold, preds, grid, ks=KS, targets=bench.targets, boot=0)
            gs = gs[gs["method"] != "random (expected)"]
            gs.to_csv(args.out / f"{bname}_budget_grid.csv", index=False, float_format="%.4f")
            g3 = gs.pivot(index="method", columns="k", values="regret")
            print(g3.round(2).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
