#!/usr/bin/env bash
# Regenerate or extend taskrank's 17-task transfer benchmark with its recipe (L, issue #13): full
# fine-tuning of the default base model; sources on <= 2,000 examples for 2 epochs; targets on <= 250
# examples for 5 epochs at lr 1e-4, scored on their validation and test rows pooled (<= 3,000); every
# ordered pair + target-only baselines, seeds 0-4 (1,445 runs, about 22 CPU-hours). Resumable: it
# first loads the committed runs.csv into the journal, so completed runs are never repeated;
# export.sh (safe while a grid runs) writes the finished runs back.
#   bash benchmarks/transfer17/run.sh            (env: SEEDS, WORKERS, JOURNAL, WORKDIR, TASKS)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tasks=${TASKS:-$here/../../../shared/data/tasks}
journal=${JOURNAL:-$HOME/.cache/taskrank/transfer17-L/journal.sqlite}
work=${WORKDIR:-$HOME/.cache/taskrank/finetuned}
[ ! -f "$here/runs.csv" ] || taskrank transfer import --runs "$here/runs.csv" --journal "$journal"
taskrank transfer run --tasks "$tasks" --journal "$journal" --workdir "$work" \
  --seeds "${SEEDS:-0,1,2,3,4}" --workers "${WORKERS:-2}" \
  --target-examples 250 --target-epochs 5 --target-lr 1e-4 --eval-splits validation+test --eval-examples 3000
JOURNAL=$journal bash "$here/export.sh"
