"""The learned ranker (``learned:<members>``) judged honestly, and the shipped models trained.

    .venv/bin/python benchmarks/learned.py              # judge on every benchmark whose predictions exist
    .venv/bin/python benchmarks/learned.py --summary    # also (re)write its rows in <bench>_summary.csv
    .venv/bin/python benchmarks/learned.py --train      # also write src/taskrank/pools/taskweb/learned/*.json

Offline: it reads every method's predictions on a benchmark (``results/<bench>_methods.json``, from
``results_table.py`` and ``taskweb22/run.py``) and the benchmark's gold; nothing is run. CPU: a few
minutes (``--nested`` fits a few thousand small models).

Benchmarks: transfer17 (taskrank's 17-task matrix, 5 seeds) and taskweb22 (TaskWeb's t5l/finetune
matrix, 20 targets, piqa left out as TaskWeb does).

Configurations: for each member set of ``MEMBER_SETS`` (members present in both benchmarks), the
model kinds of ``KINDS`` (a linear pairwise logistic model, L2 with C = 0.1 — scikit-learn —,
XGBoost's LambdaMART ``rank:ndcg`` and LightGBM's ``lambdarank``) × ``SPECS`` (member features
only, or also the transfer-matrix features with the pivot weights' temperature tau 0.5 or 1).

Protocols (means over targets, 95% percentile bootstrap over targets; a learned row and its members
are judged on the same resampled targets, so their difference is paired):

* ``loto-nested`` (the summary row): leave one target out; inside each fold the configuration is
  chosen by an inner leave-one-target-out on the remaining targets (best mean TaskWeb NDCG), then
  trained on all of them. The matrix the features see never holds the held-out target (no row, no
  column) — nor, in an inner fold, the inner held-out target.
* ``loto`` per configuration (``learned_configs.csv``): the same without the inner choice, for every
  configuration — optimistic if one reads off the best.
* ``cross``: the configuration chosen by leave-one-target-out on one benchmark, trained on all of
  it (its own matrix), judged on every target of the other (that matrix, pivots ≠ the target).

Writes (``--out``, default benchmarks/results/):
  learned_configs.csv       bench, protocol, config, NDCG/Regret/Spearman of every configuration
  learned.csv               bench, protocol, method, metrics with intervals; vs best member (paired)
  learned_predictions.csv   bench, protocol, method, target, source, score (used by budget.py)
  <bench>_summary.csv       with --summary: rows 'learned:<members>' (loto-nested) and
                            'learned:<members> (trained on <other>)' (cross) replaced/added
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "src"))

MEMBER_SETS = {
    "text": ["roe", "textemb", "vocab", "size", "same-type"],
    "all": ["roe", "textemb", "semb", "vocab", "size", "same-type", "taskemb", "tupate-bitfit", "tupate-prefix",
            "esm-logme"],
}
KINDS = {"linear": ("linear", {"C": 0.1}), "xgboost": ("xgboost", {}), "lightgbm": ("lightgbm", {})}
try:  # XGBoost is measured when installed (pip install xgboost); the shipped models need only LightGBM to train
    import xgboost  # noqa: F401
except ImportError:  # pragma: no cover
    KINDS.pop("xgboost")
SPECS = {"members": {"transitive": []}, "members+matrix,tau=0.5": {"transitive": ["prior", "knn"], "tau": 0.5},
         "members+matrix,tau=1": {"transitive": ["prior", "knn"], "tau": 1.0}}
METRICS = ["ndcg_taskweb", "regret_max@1", "regret_max@3", "regret_mean@5", "spearman"]


def benchmarks(data: Path = DATA) -> dict:
    from taskrank.evaluation import load_gold

    return {
        "transfer17": {"preds": RESULTS / "transfer17_methods.json", "exclude": [], "pool": "default",
                       "gold": lambda: load_gold(HERE / "transfer17" / "runs.csv")},
        "taskweb22": {"preds": RESULTS / "taskweb22_methods.json", "exclude": ["piqa"], "pool": "taskweb",
                      "gold": lambda: load_gold(taskweb=data / "taskweb", model="t5l", adaptation="finetune")},
    }


def same_type(preds: pd.DataFrame, pool: str) -> pd.DataFrame:
    """The 'same-type' estimator's scores, from the pool's task types (what it reads from the
    pool's size artefacts): 1 if source and target have the same task type."""
    from taskrank.estimators.learned import POOLS

    kinds = {t["name"]: t["type"] for t in json.loads((POOLS / pool / "pool.json").read_text())["tasks"]}
    pairs = preds[["target", "source"]].drop_duplicates()
    score = [float(kinds[s] == kinds[t]) for t, s in zip(pairs["target"], pairs["source"])]
    return pairs.assign(method="same-type", score=score)[["method", "target", "source", "score"]]


class Bench:
    """One benchmark: its predictions, gold, targets and the features of any fold (cached)."""

    def __init__(self, name: str, spec: dict):
        self.name, self.pool, self.exclude = name, spec["pool"], spec["exclude"]
        saved = json.loads(Path(spec["preds"]).read_text())
        self.preds = pd.DataFrame(saved["predictions"])[["method", "target", "source", "score"]]
        if "same-type" not in set(self.preds["method"]):  # tables written before it existed
            self.preds = pd.concat([self.preds, same_type(self.preds, self.pool)], ignore_index=True)
        self.gold = spec["gold"]()
        self.targets = [t for t in self.gold.targets if t in set(self.preds["target"]) and t not in self.exclude]
        rows = []
        for t in self.targets:
            g, _, _ = self.gold.target(t)
            rows.append(pd.DataFrame({"target": t, "source": g.index, "gold": g.to_numpy()}))
        self.labels = pd.concat(rows, ignore_index=True)
        self.methods = sorted(set(self.preds["method"]))
        self._cache: dict = {}

    def frame(self, members, spec, drop=(), targets=None) -> pd.DataFrame:
        """Features (+ gold) of ``targets`` with the matrix lacking every task in ``drop``."""
        from taskrank.estimators.learned import features_frame

        targets = tuple(targets or self.targets)
        key = (tuple(members), json.dumps(spec, sort_keys=True), tuple(sorted(drop)) if spec["transitive"] else (),
               targets)
        if key not in self._cache:
            p = self.gold.pairs[["target", "source", "score"]].dropna()
            p = p[~p["target"].isin(drop) & ~p["source"].isin(drop)]
            F = features_frame(self.preds, members, p, spec, targets=targets)
            self._cache[key] = F.merge(self.labels, on=["target", "source"], how="left")
        return self._cache[key]


def _fit(kind, params, train: pd.DataFrame, cols):
    from taskrank.estimators.learned import fit_model

    tr = train.dropna(subset=["gold"])
    return fit_model(kind, tr[cols].to_numpy(), tr["gold"].to_numpy(), tr["target"].to_numpy(), cols, **params)


def configs_for(members) -> dict:
    return {f"{k}|{s}": (members, kind, params, spec) for k, (kind, params) in KINDS.items()
            for s, spec in SPECS.items()}


def loto_one(bench: Bench, config, t: str, pool_targets: list[str], extra_drop=()) -> pd.DataFrame:
    """Train on ``pool_targets`` minus t (matrix without t and ``extra_drop``), score t."""
    from taskrank.estimators.learned import FeatureSpec

    members, kind, params, spec = config
    cols = FeatureSpec(spec).names(members)
    drop = (t, *extra_drop)
    F = bench.frame(members, spec, drop=drop, targets=pool_targets)
    # as if t (and extra_drop) had never been measured: no rows for them as targets or as sources
    model = _fit(kind, params, F[~F["target"].isin(drop) & ~F["source"].isin(drop)], cols)
    te = F[F["target"] == t]
    return te[["target", "source"]].assign(score=model.predict(te[cols].to_numpy()))


def loto(bench: Bench, config, targets=None) -> pd.DataFrame:
    targets = list(targets or bench.targets)
    return pd.concat([loto_one(bench, config, t, targets) for t in targets], ignore_index=True)


def ndcg_of(bench: Bench, preds: pd.DataFrame) -> float:
    from taskrank import metrics

    vals = []
    for t, d in preds[preds["target"].isin(bench.targets)].groupby("target"):
        g = bench.labels[bench.labels["target"] == t].set_index("source")["gold"]
        vals.append(metrics.ndcg(d.set_index("source")["score"].reindex(g.index), g, "taskweb"))
    return float(np.mean(vals))


def choose(bench: Bench, configs: dict, targets: list[str], drop=()) -> str:
    """The configuration with the best leave-one-target-out NDCG over ``targets`` (matrix without ``drop``)."""
    best, best_v = None, -np.inf
    for name, config in configs.items():
        preds = pd.concat([loto_one(bench, config, u, targets, extra_drop=drop) for u in targets], ignore_index=True)
        v = ndcg_of(bench, preds)
        if v > best_v:
            best, best_v = name, v
    return best


def nested(bench: Bench, configs: dict, log=None) -> tuple[pd.DataFrame, dict]:
    out, picks = [], {}
    for t in bench.targets:
        inner = [u for u in bench.targets if u != t]
        picks[t] = choose(bench, configs, inner, drop=(t,))
        out.append(loto_one(bench, configs[picks[t]], t, bench.targets))
        if log:
            log(f"{bench.name} nested: {t} -> {picks[t]}")
    return pd.concat(out, ignore_index=True), picks


def cross(train: Bench, test: Bench, config) -> pd.DataFrame:
    from taskrank.estimators.learned import FeatureSpec

    members, kind, params, spec = config
    cols = FeatureSpec(spec).names(members)
    model = _fit(kind, params, train.frame(members, spec), cols)
    out = []
    for t in test.targets:
        te = test.frame(members, spec, drop=(t,), targets=[t])
        out.append(te[["target", "source"]].assign(score=model.predict(te[cols].to_numpy())))
    return pd.concat(out, ignore_index=True)


def evaluate(bench: Bench, preds: pd.DataFrame, boot: int):
    from taskrank.evaluation import evaluate_predictions

    return evaluate_predictions(bench.gold, preds, targets=bench.targets, boot=boot, seed_boot=0, seed=0)


RANDOM = "random (expected)"


def paired_diff(ev, a: str, b: str, metric: str = "ndcg_taskweb", boot: int = 1000, seed: int = 0, level=0.95):
    """Mean over targets of metric(a) − metric(b), with a percentile bootstrap over targets."""
    pt = ev.per_target
    x = pt[pt["method"] == a].set_index("target")[metric]
    y = pt[pt["method"] == b].set_index("target")[metric].reindex(x.index)
    d = (x - y).to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    scale = 100.0 if metric.startswith(("ndcg", "regret")) else 1.0
    return scale * d.mean(), scale * lo, scale * hi, int((d > 0).sum()), int((d < 0).sum())


def summary_rows(ev, methods: list[str]) -> pd.DataFrame:
    tidy = ev.tidy()
    tidy = tidy[(tidy["target"] == "(mean)") & tidy["method"].isin(methods)]
    wide = tidy.pivot(index="method", columns="metric", values="value").reindex(index=methods, columns=ev.metrics)
    wide.insert(0, "n_targets", len(ev.meta["targets"]))
    lo = tidy[tidy["metric"] == "ndcg_taskweb"].set_index("method")
    wide["ndcg_taskweb_lo"], wide["ndcg_taskweb_hi"] = lo["boot_lo"], lo["boot_hi"]
    return wide.reset_index()


def write_summary(path: Path, rows: pd.DataFrame, notes: list[str]) -> None:
    """Replace the 'learned:' rows of a <bench>_summary.csv with ``rows`` (the file's columns; a
    ``notes`` column, where the file has one, says how each row was judged)."""
    if not path.is_file():
        return
    old = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in rows.columns if c != "method"})
    old = old[~old["method"].astype(str).str.startswith("learned:")]
    new = rows.copy()
    if "notes" in old.columns:
        new["notes"] = notes
    new = new.reindex(columns=old.columns)
    pd.concat([old, new], ignore_index=True).to_csv(path, index=False, float_format="%.4f")


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", nargs="*", default=None, help="transfer17 and/or taskweb22 (default: those present)")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--no-nested", action="store_true", help="skip the nested choice (minutes of CPU)")
    ap.add_argument("--summary", action="store_true", help="(re)write the learned rows of <bench>_summary.csv")
    ap.add_argument("--train", action="store_true", help="train the shipped model of each member set")
    ap.add_argument("--train-on", default="taskweb22", help="the benchmark whose gold trains the shipped models")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    start = time.time()
    log = lambda msg: print(f"[{time.time() - start:5.0f}s] {msg}", file=sys.stderr, flush=True)

    spec_all = benchmarks()
    names = args.bench or [n for n, s in spec_all.items() if Path(s["preds"]).is_file()]
    benches = {n: Bench(n, spec_all[n]) for n in names}
    member_sets = {k: [m for m in v if all(m in b.methods for b in benches.values())] for k, v in MEMBER_SETS.items()}
    for k, v in MEMBER_SETS.items():
        if member_sets[k] != v:
            log(f"member set {k}: {sorted(set(v) - set(member_sets[k]))} missing from some benchmark, left out")

    # 1. every configuration, leave-one-target-out
    grid, chosen = [], {}
    for bname, bench in benches.items():
        for mset, members in member_sets.items():
            best, best_v = None, -np.inf
            for cname, config in configs_for(members).items():
                preds = loto(bench, config).assign(method="x")
                ev = evaluate(bench, preds, boot=0)
                s = ev.summary.set_index(["method", "metric"])["mean"]
                row = {"bench": bname, "protocol": "loto", "members": mset, "config": cname}
                row.update({m: (100 if m != "spearman" else 1) * s[("x", m)] for m in METRICS})
                grid.append(row)
                if row["ndcg_taskweb"] > best_v:
                    best, best_v = cname, row["ndcg_taskweb"]
            chosen[(bname, mset)] = best
            log(f"{bname} {mset}: best LOTO configuration {best} ({best_v:.2f})")
            for other in [o for o in benches.values() if o.name != bname]:  # every configuration, cross
                for cname, config in configs_for(members).items():
                    ev = evaluate(bench, cross(other, bench, config).assign(method="x"), boot=0)
                    s = ev.summary.set_index(["method", "metric"])["mean"]
                    row = {"bench": bname, "protocol": f"cross from {other.name}", "members": mset, "config": cname}
                    row.update({m: (100 if m != "spearman" else 1) * s[("x", m)] for m in METRICS})
                    grid.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(grid).to_csv(args.out / "learned_configs.csv", index=False, float_format="%.4f")

    # 2. the honest rows: nested LOTO and cross-benchmark
    all_preds, results = [], []
    for bname, bench in benches.items():
        learned = {}
        for mset, members in member_sets.items():
            name = f"learned:{'+'.join(members)}"
            if not args.no_nested:
                p, picks = nested(bench, configs_for(members))
                learned[name] = ("loto-nested", p, json.dumps(picks))
                log(f"{bname} {mset} nested picks: {pd.Series(picks).value_counts().to_dict()}")
            others = [o for o in benches.values() if o.name != bname]
            for other in others:
                cfg = chosen[(other.name, mset)]
                p = cross(other, bench, configs_for(members)[cfg])
                learned[f"{name} (trained on {other.name})"] = (f"cross from {other.name}", p, cfg)
        if not learned:
            continue
        preds = pd.concat([p.assign(method=m) for m, (_, p, _) in learned.items()], ignore_index=True)
        # the members, and the best method of the benchmark's table (by NDCG; ceilings are not methods)
        table = bench.preds[~bench.preds["method"].str.startswith("gold ceiling")]
        by_ndcg = evaluate(bench, table, boot=0).summary.query("metric == 'ndcg_taskweb' and method != @RANDOM")
        best_method = by_ndcg.set_index("method")["mean"].idxmax()
        keep = sorted({x for v in member_sets.values() for x in v} | {best_method})
        base = bench.preds[bench.preds["method"].isin(keep)]
        ev = evaluate(bench, pd.concat([preds, base], ignore_index=True), boot=args.boot)
        tidy = ev.tidy()
        mean = tidy[tidy["target"] == "(mean)"].set_index(["method", "metric"])
        per = ev.per_target
        for m, (protocol, p, cfg) in learned.items():
            members = m.split(" ")[0].split(":", 1)[1].split("+")
            # the best single member on this benchmark (by mean NDCG), for the paired comparison
            member_ndcg = {x: mean.loc[(x, "ndcg_taskweb"), "value"] for x in members}
            best_member = max(member_ndcg, key=member_ndcg.get)
            d, lo, hi, wins, losses = paired_diff(ev, m, best_member, boot=args.boot)
            row = {"bench": bname, "protocol": protocol, "method": m, "config": cfg, "n_targets": len(bench.targets)}
            for metric in METRICS:
                row[metric] = mean.loc[(m, metric), "value"]
                row[f"{metric}_lo"], row[f"{metric}_hi"] = mean.loc[(m, metric), "boot_lo"], mean.loc[(m, metric), "boot_hi"]
            row.update({"best_member": best_member, "best_member_ndcg": member_ndcg[best_member],
                        "vs_best_member": d, "vs_best_member_lo": lo, "vs_best_member_hi": hi,
                        "targets_won": wins, "targets_lost": losses})
            d, lo, hi, wins, losses = paired_diff(ev, m, best_method, boot=args.boot)
            row.update({"best_method": best_method, "best_method_ndcg": mean.loc[(best_method, "ndcg_taskweb"), "value"],
                        "vs_best_method": d, "vs_best_method_lo": lo, "vs_best_method_hi": hi})
            results.append(row)
            log(f"{bname} {m}: NDCG {row['ndcg_taskweb']:.2f} [{row['ndcg_taskweb_lo']:.2f}, "
                f"{row['ndcg_taskweb_hi']:.2f}] vs {best_member} {row['vs_best_member']:+.2f} "
                f"[{row['vs_best_member_lo']:+.2f}, {row['vs_best_member_hi']:+.2f}], vs {best_method} "
                f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        all_preds.append(preds.assign(bench=bname, protocol=preds["method"].map(lambda x: learned[x][0])))
        if args.summary:
            explain = {"loto-nested": "leave-one-target-out, configuration chosen inside each fold, matrix without "
                                      "the held-out target (benchmarks/learned.py)"}
            notes = [explain.get(v[0], f"trained on {v[0].split()[-1]} only ({v[2]}), never on this gold "
                                       "(benchmarks/learned.py)") for v in learned.values()]
            write_summary(args.out / f"{bname}_summary.csv", summary_rows(ev, list(learned)), notes)
    if results:
        pd.DataFrame(results).to_csv(args.out / "learned.csv", index=False, float_format="%.4f")
        pd.concat(all_preds, ignore_index=True)[["bench", "protocol", "method", "target", "source", "score"]].to_csv(
            args.out / "learned_predictions.csv", index=False, float_format="%.8g")

    # 3. the shipped models: trained on TaskWeb's gold (8 seeds; ceiling 83.6 against transfer17's 78.4), each
    #    member set in its best leave-one-target-out configuration there; one model serves every pool (its
    #    features come from the pool's own transfer table when it ranks)
    if args.train:
        from taskrank.estimators.learned import FeatureSpec, POOLS, members_key, save_model

        bench = benches[args.train_on]
        for mset, members in member_sets.items():
            cfg = chosen[(bench.name, mset)]
            _, kind, params, spec = configs_for(members)[cfg]
            cols = FeatureSpec(spec).names(members)
            model = _fit(kind, params, bench.frame(members, spec), cols)
            # how this recipe was judged: leave-one-target-out on its own gold, and trained there, judged on the other
            judged = [r for r in results if r["method"].split(" ")[0] == f"learned:{'+'.join(members)}" and (
                (r["bench"] == bench.name and r["protocol"] == "loto-nested") or r["protocol"] == f"cross from {bench.name}")]
            path = save_model(POOLS / bench.pool / "learned" / f"{members_key(members)}.json", model, members, spec,
                              trained_on={"benchmark": bench.name, "gold": bench.gold.origin.replace(str(REPO.parent) + "/", "../"),
                                          "targets": bench.targets, "config": cfg, "params": params,
                                          "command": "python benchmarks/learned.py --train"},
                              judged={r["bench"] + ": " + r["protocol"]: {"ndcg_taskweb": round(r["ndcg_taskweb"], 2),
                                      "interval": [round(r["ndcg_taskweb_lo"], 2), round(r["ndcg_taskweb_hi"], 2)]}
                                      for r in judged})
            log(f"trained {path.relative_to(REPO)} ({cfg})")
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_rows", 200):
        print(pd.DataFrame(grid).round(2).to_string(index=False))
        if results:
            r = pd.DataFrame(results)
            print(r[["bench", "protocol", "method", "ndcg_taskweb", "ndcg_taskweb_lo", "ndcg_taskweb_hi",
                     "regret_max@3", "best_member", "best_member_ndcg", "vs_best_member", "vs_best_member_lo",
                     "vs_best_member_hi"]].round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
