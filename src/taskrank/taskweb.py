"""TaskWeb's 22 tasks (Kim et al. 2023) as taskrank tasks: what the shipped ``taskweb`` pool and the
``benchmarks/taskweb22`` benchmark are built from.

Each task is its folder of the taskweb-tasks layout (TaskWeb's own prompted examples, rebuilt from
its repository: ``train.jsonl`` and the RoE inputs ``roe32.jsonl``), loaded as any folder is. Where
a folder has no training examples the task keeps what it has, and :data:`SUBSTITUTES` says what the
methods that train use instead:

- stsb: TaskWeb's prompted sample is not released; the methods use GLUE STS-B from ``tasks-extra``
  (sentence pairs, regression scores 0-5), and RoE keeps TaskWeb's 160 roe32 entries;
- imdb: only the 32 × 11 RoE entries; the 320 with an answer among their choices are the examples;
- quartz: ``train.jsonl`` holds Natural-Instructions' QuaRTz instances, not TaskWeb's sample.

squad_v2 is TaskWeb's one generation task (a source only): methods that train a head do not score it.
"""

from __future__ import annotations

from pathlib import Path

from .tasks import ROE_FILE, Task, read_roe_inputs, load_task

TASKWEB_TASKS = ("anli_r3", "boolq", "cb", "copa", "cosmosqa", "hellaswag", "imdb", "mrpc", "piqa", "qnli",
                 "qqp", "quartz", "rotten_tomatoes", "rte", "scitail", "snli", "socialiqa", "squad_v2",
                 "stsb", "wic", "winogrande", "wsc")
SUBSTITUTES = {"stsb": "GLUE STS-B from tasks-extra/stsb (regression; TaskWeb's prompted sample is not released)",
               "imdb": "the 320 answered entries of TaskWeb's RoE inputs (roe32.jsonl; no training sample is released)",
               "quartz": "Natural-Instructions QuaRTz instances (not TaskWeb's training sample)"}


def load_taskweb_task(name: str, data: str | Path) -> Task:
    """One TaskWeb task from the shared data folder (``data`` holds taskweb-tasks/ and tasks-extra/)."""
    data = Path(data)
    folder = data / "taskweb-tasks" / name
    if name == "stsb" and (data / "tasks-extra" / "stsb").is_dir():
        task = load_task(data / "tasks-extra" / "stsb", name="stsb")
        task.extras["roe32"] = read_roe_inputs(folder / ROE_FILE)
        return task
    return load_task(folder, name=name)


def load_taskweb_tasks(data: str | Path, names=TASKWEB_TASKS) -> list[Task]:
    return [load_taskweb_task(n, data) for n in names]


def taskweb_loader(tasks_folder: str | Path):
    """``load(name)`` for a folder of the taskweb-tasks layout (its tasks.json names TaskWeb tasks),
    so an evaluation reads each TaskWeb target as the TaskWeb pool does; None for any other folder."""
    import json

    index = Path(tasks_folder) / "tasks.json"
    try:
        entries = json.loads(index.read_text(encoding="utf-8")) if index.is_file() else {}
    except (OSError, ValueError):
        return None
    if not entries or not all(isinstance(e, dict) and "taskweb_name" in e for e in entries.values()):
        return None
    return lambda name: load_taskweb_task(name, Path(tasks_folder).parent)
