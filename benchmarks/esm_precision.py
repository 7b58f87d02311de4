"""Which storage of the ESMs keeps ESM-LogME rankings identical? (a measurement, not a test)

    python benchmarks/esm_precision.py [--pools default taskweb] [--out benchmarks/results/esm_precision.json]

For each shipped pool (``default``: the 17 transfer17 tasks; ``taskweb``: TaskWeb-22's 22 tasks,
its own ESM recipe), every task in turn is the target and the pool's other sources are ranked with
their shipped float32 ESMs (the reference) and with the same maps stored smaller:

* ``float16`` / ``bfloat16``: half the bytes, every entry rounded;
* ``lowrank`` (float32): W's best rank-d/4 approximation (truncated SVD), the same bytes as float16;
* ``identity+lowrank`` (float32): I + the best rank-d/4 approximation of W - I (an ESM is near the
  identity when fine-tuning moves the embeddings little), the same bytes.

Per variant and pool: how many targets keep exactly the float32 ranking, the smallest Kendall tau,
whether the top-1 source stays, the largest score change, and bytes per ESM.  Target embeddings come
from the user cache (computed once if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

os.environ.setdefault("TASKRANK_QUIET", "1")

from taskrank.models import BaseModel  # noqa: E402
from taskrank.ordering import best_first as order  # noqa: E402
from taskrank.pool import Pool  # noqa: E402
from taskrank.resolve import find_source, target_artefact  # noqa: E402
from taskrank.store import default_cache  # noqa: E402
from taskrank.tasks import load_task_folder  # noqa: E402
from taskrank.taskweb import load_taskweb_task  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16's 8-bit mantissa (round to nearest even), back as float32."""
    bits = a.astype(np.float32).view(np.uint32)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return bits.view(np.float32)


def low_rank(w: np.ndarray, k: int, around_identity: bool) -> np.ndarray:
    a = w.astype(np.float64) - (np.eye(w.shape[0]) if around_identity else 0.0)
    u, s, vt = np.linalg.svd(a)
    approx = (u[:, :k] * s[:k]) @ vt[:k]
    return (approx + (np.eye(w.shape[0]) if around_identity else 0.0)).astype(np.float32)


def variants(d: int) -> dict:
    k = d // 4  # k (d + d) float32 values = d^2 / 2 float32 = d^2 float16
    same = lambda a: a  # noqa: E731
    return {
        "float32": (lambda w: w, same, 4 * (d * d + d)),
        "float16": (lambda w: w.astype(np.float16).astype(np.float32),
                    lambda b: b.astype(np.float16).astype(np.float32), 2 * (d * d + d)),
        "bfloat16": (bf16_round, bf16_round, 2 * (d * d + d)),
        f"lowrank{k}": (lambda w: low_rank(w, k, False), same, 4 * (2 * k * d + d)),
        f"identity+lowrank{k}": (lambda w: low_rank(w, k, True), same, 4 * (2 * k * d + d)),
    }


def measure(pool_name: str, load) -> dict:
    pool, base, cache = Pool.open(pool_name), BaseModel(), default_cache()
    est = pool.estimator("esm-logme", model=base)
    maps = {t["name"]: find_source(est, pool.store, t["fingerprint"]) for t in pool.tasks if est.supports(t["type"])}
    maps = {n: a for n, a in maps.items() if a is not None}
    d = next(iter(maps.values())).tensors["model.weight"].shape[0]
    casts = variants(d)
    stored = {name: {n: (cw(a.tensors["model.weight"]), cb(a.tensors["model.bias"])) for n, a in maps.items()}
              for name, (cw, cb, _) in casts.items()}
    out = {name: {"identical": 0, "same_top1": 0, "min_kendall": 1.0, "max_abs_score_change": 0.0,
                  "bytes_per_esm": size, "changed": []} for name, (_, _, size) in casts.items()}
    targets = 0
    for target in maps:
        task = load(target)
        target_art = target_artefact(est, task, cache)
        names = [n for n in maps if n != target]
        ref = None
        for name in casts:
            sources = [type(maps[n])({"model.weight": stored[name][n][0], "model.bias": stored[name][n][1]},
                                     maps[n].config) for n in names]
            scores = est.score(target_art, sources)
            ref = scores if ref is None else ref
            r = out[name]
            same = list(order(names, scores)) == list(order(names, ref))
            r["identical"] += int(same)
            r["same_top1"] += int(order(names, scores)[0] == order(names, ref)[0])
            r["min_kendall"] = min(r["min_kendall"], float(kendalltau(scores, ref).statistic))
            r["max_abs_score_change"] = max(r["max_abs_score_change"], float(np.max(np.abs(scores - ref))))
            if not same:
                r["changed"].append(target)
        targets += 1
        print(pool_name, target, {k: v["identical"] for k, v in out.items()}, flush=True)
    return {"targets": targets, "sources_per_target": len(maps) - 1, "esm_dim": d,
            "esm_params": {k: getattr(est, k) for k in ("source_examples", "source_epochs", "target_examples")},
            "variants": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", nargs="+", default=["default", "taskweb"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "esm_precision.json")
    args = parser.parse_args()
    started = time.time()
    loaders = {
        "default": lambda: {t.name: t for t in load_task_folder(args.data / "tasks")}.__getitem__,
        "taskweb": lambda: lambda name: load_taskweb_task(name, args.data),
    }
    result = {"meta": {"command": "esm_precision.py " + " ".join(f"--pools {p}" for p in args.pools),
                       "reference": "the shipped float32 ESMs; every other variant is the same maps stored smaller",
                       "ranking": "best first, ties by name (taskrank.ordering.best_first)"}, "pools": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for pool_name in args.pools:  # written after each pool: a long run keeps what it measured
        result["pools"][pool_name] = measure(pool_name, loaders[pool_name]())
        result["meta"]["wall_s"] = round(time.time() - started, 1)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({p: {k: (v["identical"], v["bytes_per_esm"]) for k, v in r["variants"].items()}
                      for p, r in result["pools"].items()}, indent=1))


if __name__ == "__main__":
    main()
