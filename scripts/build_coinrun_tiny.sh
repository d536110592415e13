#!/usr/bin/env bash
# Rebuild the shipped world `coinrun-tiny` from nothing: collect CoinRun (training levels
# 0-9,999; held-out levels >= 100,000), train the tiny preset's three stages, package the
# weights (float16) into src/nextworld/zoo/coinrun-tiny, choose its sampling (MaskGIT steps,
# temperature, keep bias) on a validation split of training-level episodes, evaluate the packaged world
# on the held-out levels, write its keys (controls.json) from the latent->real map fitted there,
# and write its model card with that evaluation.
# Usage: scripts/build_coinrun_tiny.sh [WORK_DIR]   (about an hour on 2 CPU cores)
set -euo pipefail
work="${1:-outputs/coinrun-tiny}"
nextworld="${NEXTWORLD:-.venv/bin/nextworld}"
python="${PYTHON:-.venv/bin/python}"

"$nextworld" collect coinrun --out "$work/train" --episodes 600 --max-episode-steps 250 --levels 0:10000 \
    --policy sticky --seed 0
"$nextworld" collect coinrun --out "$work/val" --episodes 30 --max-episode-steps 250 --levels 0:10000 \
    --policy sticky --seed 7
"$nextworld" collect coinrun --out "$work/heldout" --episodes 60 --max-episode-steps 250 --levels 100000:200000 \
    --policy sticky --seed 1
for stage in tokenizer lam dynamics; do
    "$nextworld" train genie --data "$work/train" --out "$work/run" --preset tiny --stage "$stage"
done
"$python" scripts/choose_sampling.py "$work/run" --data "$work/val" --keep-biases 0,2,4,8
"$python" scripts/package_world.py "$work/run" coinrun-tiny --overwrite
"$nextworld" eval coinrun-tiny --data "$work/heldout" --json "$work/eval/eval.json"
"$python" scripts/write_controls.py src/nextworld/zoo/coinrun-tiny --eval "$work/eval/eval.json"
"$python" scripts/package_world.py "$work/run" coinrun-tiny --card "$work/eval/eval.json" \
    --command-file scripts/build_coinrun_tiny.sh
