"""Build (or extend, resumably) the shipped TaskWeb pool: src/taskrank/pools/taskweb.

    .venv/bin/python benchmarks/taskweb22/build_pool.py                 # every method, cheap ones first
    .venv/bin/python benchmarks/taskweb22/build_pool.py --methods roe vocab

The 22 tasks of TaskWeb's release (taskrank.taskweb), each method's source artefacts (a method
that trains a head skips squad_v2, a generation task), TaskShop's transfer table from TaskWeb's
released matrix (t5l / finetune pair score), and ``method_params``: RoE follows TaskWeb's own
construction from roe32.jsonl. A task already prepared for a method is skipped, so the command
resumes where it stopped; pool.json is rewritten atomically after every task.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
POOL = REPO / "src" / "taskrank" / "pools" / "taskweb"
# cheap first, so an interrupted build still ships the text methods
METHODS = ["random", "size", "vocab", "semb", "textemb", "roe", "roe,inputs=examples", "tupate-bitfit", "tupate-lora", "taskemb",
           "esm-logme", "tupate-prefix", "prompt-max", "llm-similarity"]
# CPU-sized recipes: TaskWeb's prompted inputs fill the 128 tokens and multiple-choice examples
# are 2-4 sequences each, so the methods that train use 100 examples (the default pool: 500) and
# ESM-LogME's source models 300 examples x 1 epoch; every one is recorded here and in the artefacts.
TUNED = {"n_examples": 100, "batch_size": 16}
METHOD_PARAMS = {
    "roe": {"inputs": "taskweb"}, "taskshop": {"transfer": "transfer.csv"},
    **{m: TUNED for m in ("tupate-lora", "tupate-bitfit", "tupate-prefix", "prompt-feature", "prompt-unigram",
                          "prompt-flatten", "prompt-bigram", "prompt-max")},
    **{m: {**TUNED, "n_fisher": 100} for m in ("taskemb", "curvegrad")},
    "esm-logme": {"source_examples": 300, "source_epochs": 1, "target_examples": 500},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--out", type=Path, default=POOL)
    ap.add_argument("--task-major", action="store_true",
                    help="all methods for one task, then the next (textemb and semb share one forward pass)")
    args = ap.parse_args(argv)

    from taskrank.estimators.taskshop import write_transfer
    from taskrank.models import BaseModel
    from taskrank.pool import POOL_FILE, Pool
    from taskrank.resolve import leaves
    from taskrank.store import atomic_write
    from taskrank.taskweb import TASKWEB_TASKS, load_taskweb_tasks
    from taskrank.transfer.matrix import import_taskweb

    args.out.mkdir(parents=True, exist_ok=True)
    write_transfer(import_taskweb(args.data / "taskweb", "t5l", "finetune"), args.out / "transfer.csv")
    pool = Pool(args.out)
    pool.meta["method_params"] = METHOD_PARAMS
    pool.meta["description"] = ("TaskWeb's 22 tasks (Kim et al. 2023) from TaskWeb's own prompted examples; "
                                "TaskShop's transfer table is TaskWeb's released t5l/finetune pair score")
    atomic_write(pool.fs, f"{pool._path}/{POOL_FILE}", json.dumps(pool.meta, indent=1).encode())
    tasks = load_taskweb_tasks(args.data, TASKWEB_TASKS)
    base = BaseModel()
    failed = 0
    groups = [args.methods] if args.task_major else [[m] for m in args.methods]
    for group in groups:
        name = " ".join(group)
        estimators = leaves([pool.estimator(m, model=base) for m in group])
        start = time.time()
        for task in tasks:
            try:
                pool.add(task, estimators)
            except Exception as e:  # keep building the others; a rerun retries what failed
                failed += 1
                print(f"{name}: {task.name} FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                continue
            print(f"{name}: {task.name} ready ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
