#!/usr/bin/env bash
# Issue 4's seed question: generative versus JEPA at equal training compute. The same encoder,
# predictor, data, batch and number of steps (the tiny recipe); one model predicts embeddings
# (JEPA, VICReg), the other decodes every prediction into pixels and learns from the pixel
# error. Both are then measured the same way: linear probes of the true position on held-out
# episodes, and planning success in 50 Two-Rooms episodes with seeds never used for data.
# Usage: scripts/compare_jepa_generative.sh [WORK_DIR]   (about 40 minutes on 2 CPU cores)
set -euo pipefail
work="${1:-outputs/jepa-vs-generative}"
nextworld="${NEXTWORLD:-.venv/bin/nextworld}"

[ -d "$work/train" ] || "$nextworld" collect tworooms --out "$work/train" --episodes 1000 --max-episode-steps 91 \
    --policy crossing --seed 0
[ -d "$work/probe" ] || "$nextworld" collect tworooms --out "$work/probe" --episodes 100 --max-episode-steps 91 \
    --policy wandering --seed 50000
for objective in jepa generative; do
    "$nextworld" train jepa --data "$work/train" --out "$work/$objective" --preset tiny --objective "$objective"
    "$nextworld" eval "$work/$objective" --data "$work/probe" --json "$work/$objective-probe.json"
    "$nextworld" plan "$work/$objective" --env tworooms --episodes 50 --seed 100000 --json "$work/$objective-plan.json"
done
