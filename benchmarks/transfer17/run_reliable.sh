#!/usr/bin/env bash
# The transfer17 grid with recipe L (issue #13; pilot_lowdata.py, results/transfer17_pilot_lowdata.csv):
# targets trained 5 epochs at lr 1e-4 on <= 250 examples and scored on their validation and test
# rows pooled (<= 3,000), seeds 0-4, every ordered pair + target-only baselines. About 11 h of CPU;
# resumable across sessions: it first loads the committed reliable/runs.csv into the journal, and
# reliable_export.sh (run it before a session ends) writes the finished runs back.
#   bash benchmarks/transfer17/run_reliable.sh     (env: SEEDS, WORKERS, JOURNAL, WORKDIR, TASKS, BF16)
# BF16=--bf16 only where the CPU has bf16 instructions (avx512_bf16/amx): elsewhere taskrank ignores
# it (emulated bf16 is ~10x slower) and the runs are float32, but the flag still enters every run key,
# so keep one value for a whole grid.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tasks=${TASKS:-$here/../../../shared/data/tasks}
journal=${JOURNAL:-$HOME/.cache/taskrank/transfer17-L/journal.sqlite}
work=${WORKDIR:-$HOME/.cache/taskrank/finetuned}
mkdir -p "$here/reliable"
[ ! -f "$here/reliable/runs.csv" ] || taskrank transfer import --runs "$here/reliable/runs.csv" --journal "$journal"
taskrank transfer run --tasks "$tasks" --journal "$journal" --workdir "$work" \
  --seeds "${SEEDS:-0,1,2,3,4}" --workers "${WORKERS:-2}" ${BF16:-} \
  --target-examples 250 --target-epochs 5 --target-lr 1e-4 --eval-splits validation+test --eval-examples 3000
JOURNAL=$journal bash "$here/reliable_export.sh"
