#!/usr/bin/env bash
# Write runs.csv, matrix.csv and heatmap.png from the journal (safe while a grid is running).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
journal=${JOURNAL:-$HOME/.cache/taskrank/transfer17/journal.sqlite}
taskrank transfer export --journal "$journal" --out "$here/runs.csv" --matrix "$here/matrix.csv" --heatmap "$here/heatmap.png"
# TaskShop's default transfer table (shipped in the package) follows the matrix
taskrank pool transfer --matrix "$here/matrix.csv"
