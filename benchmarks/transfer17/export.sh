#!/usr/bin/env bash
# Write runs.csv, matrix.csv and heatmap.png from the journal (safe while a grid is running).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
journal=${JOURNAL:-$HOME/.cache/taskrank/transfer17-L/journal.sqlite}
taskrank transfer export --journal "$journal" --out "$here/runs.csv" --matrix "$here/matrix.csv" --heatmap "$here/heatmap.png"
# TaskShop's transfer table follows the matrix; it is written beside it, never into an installed
# package. The copy that ships with taskrank is a source file, updated on purpose (and checked
# against matrix.csv by tests/test_transfer17.py):
#   cp benchmarks/transfer17/transfer.csv src/taskrank/pools/default/transfer.csv
taskrank pool transfer --matrix "$here/matrix.csv" --out "$here/transfer.csv"
