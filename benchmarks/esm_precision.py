"""Which storage precision keeps ESM-LogME rankings identical? (a measurement, not a test)

    python benchmarks/esm_precision.py [--tasks ../shared/data/tasks] [--out benchmarks/results/esm_precision.json]

Fits the 17 shared tasks' ESMs in float32 (reusing the cached fine-tuned source models), then
ranks the other 16 sources for each task as target with the maps stored as float32, float16 and
bfloat16-rounded float32, and reports per precision how many of the 17 rankings are identical
to float32's, the smallest Kendall tau, the largest score change, and bytes per ESM.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

os.environ.setdefault("TASKRANK_QUIET", "1")

from taskrank.estimators.esm import EsmLogme  # noqa: E402
from taskrank.pool import Pool  # noqa: E402
from taskrank.ordering import best_first as order  # noqa: E402
from taskrank.resolve import find_source, target_artefact  # noqa: E402
from taskrank.tasks import load_task_folder  # noqa: E402


def bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16's 8-bit mantissa (round to nearest even), back as float32."""
    bits = a.astype(np.float32).view(np.uint32)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return bits.view(np.float32)


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=Path, default=here.parent.parent / "shared" / "data" / "tasks")
    parser.add_argument("--out", type=Path, default=here / "results" / "esm_precision.json")
    args = parser.parse_args()
    tasks = load_task_folder(args.tasks)
    estimator = EsmLogme(storage_dtype="float32")
    casts = {"float32": lambda a: a, "float16": lambda a: a.astype(np.float16).astype(np.float32),
             "bfloat16": bf16_round}
    with tempfile.TemporaryDirectory() as tmp:
        pool = Pool(tmp)
        pool.build(tasks, [estimator])
        maps = {t.name: find_source(estimator, pool.store, t.fingerprint) for t in tasks}
    results = {name: {"identical": 0, "min_kendall": 1.0, "max_abs_score_change": 0.0} for name in casts}
    for target in tasks:
        names = [t.name for t in tasks if t.name != target.name]
        target_art = target_artefact(estimator, target)
        ref = None
        for name, cast in casts.items():
            sources = [type(maps[n])({k: cast(v) for k, v in maps[n].tensors.items()}, maps[n].config) for n in names]
            scores = estimator.score(target_art, sources)
            if ref is None:
                ref = scores
            ranked = order(names, scores)
            same = list(ranked) == list(order(names, ref))
            r = results[name]
            r["identical"] += int(same)
            r["min_kendall"] = min(r["min_kendall"], float(kendalltau(scores, ref).statistic))
            r["max_abs_score_change"] = max(r["max_abs_score_change"], float(np.max(np.abs(scores - ref))))
        print(target.name, {k: v["identical"] for k, v in results.items()}, flush=True)
    d = maps[tasks[0].name].tensors["model.weight"].shape[0]
    for name, size in (("float32", 4), ("float16", 2), ("bfloat16", 2)):
        results[name]["bytes_per_esm"] = (d * d + d) * size
        results[name]["targets"] = len(tasks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
