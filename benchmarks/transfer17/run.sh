#!/usr/bin/env bash
# Regenerate or extend taskrank's 17-task transfer benchmark: full fine-tuning of the default base
# model, every ordered pair + target-only baselines, seeds 0,1,2. Hours of CPU; resumable: it first
# loads the committed runs.csv into the journal, so completed runs are never repeated.
#   bash benchmarks/transfer17/run.sh            (env: SEEDS, WORKERS, JOURNAL, WORKDIR, TASKS)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tasks=${TASKS:-$here/../../../shared/data/tasks}
journal=${JOURNAL:-$HOME/.cache/taskrank/transfer17/journal.sqlite}
work=${WORKDIR:-$HOME/.cache/taskrank/finetuned}
[ ! -f "$here/runs.csv" ] || taskrank transfer import --runs "$here/runs.csv" --journal "$journal"
taskrank transfer run --tasks "$tasks" --journal "$journal" --workdir "$work" \
  --seeds "${SEEDS:-0,1,2}" --workers "${WORKERS:-2}" --bf16
bash "$here/export.sh"
