#!/usr/bin/env bash
# Size and time of `pip install .` (no extras) into a fresh venv that already has the CPU build of PyTorch.
#   bash results/measure_install.sh NAME SOURCE_DIR   ->  prints NAME,torch-only MB,after MB,install seconds
# Sizes are `du -sm` of site-packages; the time is wall-clock of the second pip call (wheels from pip's cache,
# so it measures resolving, unpacking and building, not downloading). Rows: results/install.csv.
set -euo pipefail
venv=/tmp/install-$1
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0
site=$("$venv/bin/python" -c "import site; print(site.getsitepackages()[0])")
before=$(du -sm "$site" | cut -f1)
start=$(date +%s.%N)
"$venv/bin/pip" install -q "$2"
end=$(date +%s.%N)
after=$(du -sm "$site" | cut -f1)
echo "$1,$before,$after,$(echo "$end - $start" | bc)"
