"""Wall time of the same small transfer grid with 1 and 2 local workers and on a 2-worker Dask
LocalCluster, side by side in one run (a measurement, not a test).

    python benchmarks/transfer_workers.py [--tasks ../shared/data/tasks] [--out benchmarks/results/transfer_workers.json]

The grid: 4 real tasks cut to 64 training / 32 validation rows, seed 0 (4 baselines + 12 pairs,
4 source models), sources 64 examples x 1 epoch, targets 64 x 1 epoch, 64 tokens, fp32.
Each configuration starts from an empty journal and an empty model folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TASKRANK_QUIET", "1")

from taskrank.tasks import load_task_folder  # noqa: E402
from taskrank.transfer.executors import run_grid  # noqa: E402
from taskrank.transfer.journal import Journal  # noqa: E402
from taskrank.transfer.runner import TransferSetting, plan  # noqa: E402

TASKS = ("cr", "trec", "tweeteval-hate", "tweeteval-stance-climate")
SETTING = TransferSetting.flat(source_examples=64, source_epochs=1, target_examples=64, eval_examples=32, max_length=64)


def cut(src: Path, dst: Path) -> Path:
    for name in TASKS:
        (dst / name).mkdir(parents=True)
        for split, n in (("train", 64), ("validation", 32)):
            lines = (src / name / f"{split}.jsonl").read_text().splitlines()[:n]
            (dst / name / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--tasks", type=Path, default=here.parent.parent / "shared" / "data" / "tasks")
    parser.add_argument("--out", type=Path, default=here / "results" / "transfer_workers.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = plan(load_task_folder(cut(args.tasks, Path(tmp) / "tasks")), [0], SETTING)
        for label, workers, cluster in (("1 process", 1, None), ("2 processes", 2, None), ("dask local, 2 workers", 2, "local")):
            work = Path(tmp) / label.replace(" ", "_").replace(",", "")
            start = time.perf_counter()
            done = run_grid(runs, Journal(work / "journal.sqlite"), work / "models", workers=workers, cluster=cluster)
            rows.append({"executor": label, "workers": workers, "runs": done, "wall_s": round(time.perf_counter() - start, 1)})
            print(rows[-1], flush=True)
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup_vs_1"] = round(base / row["wall_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                                    "grid": {"tasks": TASKS, "runs": len(runs), "setting": SETTING.__dict__},
                                    "results": rows}, indent=1))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
