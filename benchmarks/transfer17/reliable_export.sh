#!/usr/bin/env bash
# Write reliable/runs.csv and reliable/matrix.csv from run_reliable.sh's journal (safe while it runs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
journal=${JOURNAL:-$HOME/.cache/taskrank/transfer17-L/journal.sqlite}
mkdir -p "$here/reliable"
taskrank transfer export --journal "$journal" --out "$here/reliable/runs.csv" --matrix "$here/reliable/matrix.csv"
