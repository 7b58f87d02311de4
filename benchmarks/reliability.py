"""Split-seed reliability (the gold's ceiling) of transfer17 and of every setting TaskWeb released.

    .venv/bin/python benchmarks/reliability.py   # -> benchmarks/results/{transfer17,taskweb}_reliability.csv

For each target, its sources ranked by the gold of one seed (split "one": every seed in turn) or of
half the seeds (split "half": 20 seeded random halves, all of them where there are fewer) are scored
against the gold of the other seeds with every evaluation metric (see ``taskrank.reliability``).
Rows: one per target, then "(mean)" over targets and "(mean) lo"/"(mean) hi", its 95% bootstrap
interval over targets. NDCG and Regret ×100.

Columns ``baseline`` and ``gold`` say how the gold was computed: transfer17 pairs each seed with its
own target-only run. TaskWeb released none: "seed" = per-seed baselines reconstructed from its PC
(the default), "implied" = its implied_baseline_perf for every seed (t5l/finetune only, for
comparison); settings without a released PC (t5b/lora, t5l/pfeiffer) have no baseline, so their gold
is the mean target performance (``gold`` = mean). piqa is left out of TaskWeb's targets, as TaskWeb
does. transfer17 has 5 seeds: its halves are every split into two seeds and three.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=HERE / "transfer17" / "runs.csv")
    ap.add_argument("--taskweb", type=Path, default=REPO.parent / "shared" / "data" / "taskweb")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--splits", type=int, default=20, help="random halves per target (split 'half')")
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args(argv)

    import pandas as pd

    from taskrank.reliability import SPLITS, load_seed_runs, reliability, taskweb_runs

    def rows(runs, by="score", exclude=(), **cols) -> list[pd.DataFrame]:
        return [reliability(runs, split, args.splits, by=by, exclude=exclude, boot=args.boot).wide()
                .assign(gold=by, **cols) for split in SPLITS]

    first = ["setting", "baseline", "gold", "split", "target", "n_sources", "n_splits"]
    args.out.mkdir(parents=True, exist_ok=True)
    runs, _, _ = load_seed_runs(matrix=args.runs)
    t17 = pd.concat(rows(runs, baseline="target-only runs"), ignore_index=True)
    t17 = t17[first + [c for c in t17.columns if c not in first]]
    t17.to_csv(args.out / "transfer17_reliability.csv", index=False, float_format="%.4f")

    parts = []
    for baseline in ("seed", "implied"):
        tw, notes = taskweb_runs(args.taskweb, None, None, baseline)
        for note in notes:
            print(f"taskweb ({baseline}): {note}", file=sys.stderr)
        for setting, r in tw.groupby("setting", sort=True):
            if baseline == "implied" and setting != "t5l/finetune":
                continue
            has_base = bool((r["source"] == "").any())
            parts += rows(r, "score" if has_base else "mean", ("piqa",), baseline=baseline if has_base else "none")
            print(f"taskweb {setting} ({baseline}) done", file=sys.stderr)
    tw_all = pd.concat(parts, ignore_index=True)
    tw_all = tw_all[first + [c for c in tw_all.columns if c not in first]]
    tw_all.to_csv(args.out / "taskweb_reliability.csv", index=False, float_format="%.4f")

    means = pd.concat([t17, tw_all])
    means = means[means["target"] == "(mean)"][["setting", "baseline", "gold", "split", "ndcg_taskweb", "spearman"]]
    with pd.option_context("display.width", 200):
        print(means.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
