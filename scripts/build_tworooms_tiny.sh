#!/usr/bin/env bash
# Rebuild the shipped model `tworooms-tiny` from nothing: collect Two-Rooms with the crossing
# policy (training seeds 0-999; wandering probe data, seeds 50,000-50,099), train the tiny JEPA world
# model, package it into src/nextworld/zoo/tworooms-tiny, measure the packaged model (linear
# probes on the probe data; 50 planning episodes with seeds 100,000-100,049, never used for
# data) and write its model card with those numbers.
# Usage: scripts/build_tworooms_tiny.sh [WORK_DIR]   (about 20 minutes on 2 CPU cores)
set -euo pipefail
work="${1:-outputs/tworooms-tiny}"
nextworld="${NEXTWORLD:-.venv/bin/nextworld}"
python="${PYTHON:-.venv/bin/python}"

"$nextworld" collect tworooms --out "$work/train" --episodes 1000 --max-episode-steps 91 --policy crossing --seed 0
"$nextworld" collect tworooms --out "$work/probe" --episodes 100 --max-episode-steps 91 --policy wandering \
    --seed 50000
"$nextworld" train jepa --data "$work/train" --out "$work/run" --preset tiny
"$python" scripts/package_model.py "$work/run" tworooms-tiny --overwrite
"$nextworld" eval tworooms-tiny --data "$work/probe" --json "$work/eval/probe.json"
"$nextworld" plan tworooms-tiny --env tworooms --episodes 50 --seed 100000 --json "$work/eval/plan.json"
"$python" scripts/package_model.py "$work/run" tworooms-tiny --card "$work/eval/probe.json" \
    --plan "$work/eval/plan.json" --command-file scripts/build_tworooms_tiny.sh
