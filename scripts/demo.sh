#!/usr/bin/env bash
# The main job on embedded defaults: as much of the Genie pipeline as exists so far.
#   collect CoinRun (train levels 0-9,999; held-out levels >= 100,000) -> train the tiny
#   Genie tokenizer -> evaluate it on the held-out levels -> print where everything is.
# Usage: scripts/demo.sh [OUTPUT_DIR]   (make demo uses outputs/demo)
set -euo pipefail

out="${1:-outputs/demo}"
nextworld="${NEXTWORLD:-.venv/bin/nextworld}"
steps="${DEMO_TOKENIZER_STEPS:-3000}"

rm -rf "$out"
mkdir -p "$out"

echo "== 1/4 collect CoinRun: training levels 0-9,999 and held-out levels 100,000+"
"$nextworld" collect coinrun --out "$out/data/coinrun-train" --episodes 200 --max-episode-steps 250 --levels 0:10000 --policy sticky --seed 0
"$nextworld" collect coinrun --out "$out/data/coinrun-heldout" --episodes 40 --levels 100000:200000 --policy sticky --seed 1
"$nextworld" info "$out/data/coinrun-train"

echo "== 2/4 train the tiny Genie video tokenizer ($steps steps; Ctrl-C saves, --resume continues)"
"$nextworld" train genie --data "$out/data/coinrun-train" --out "$out/run" --preset tiny --steps "$steps"

echo "== 3/4 evaluate on held-out levels"
"$nextworld" eval "$out/run" --data "$out/data/coinrun-heldout" --json "$out/eval.json"

echo "== 4/4 outputs"
cat <<EOF
  training data        $out/data/coinrun-train          (nextworld info $out/data/coinrun-train)
  held-out data        $out/data/coinrun-heldout
  tokenizer run        $out/run/tokenizer               (config.json, model.safetensors, metrics.jsonl)
  training samples     $out/run/tokenizer/samples/      (top: real frames, bottom: reconstructions)
  TensorBoard          tensorboard --logdir $out/run
  held-out metrics     $out/eval.json
  reconstructions      $out/eval_reconstructions.png
EOF
