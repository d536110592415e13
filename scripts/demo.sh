#!/usr/bin/env bash
# The main job on embedded defaults: the shipped Genie world `coinrun-tiny`, measured and
# played on CoinRun levels it never saw, then the same pipeline trained from scratch on a
# few-minute budget to show the commands; then the shipped JEPA world model `tworooms-tiny`
# planning its way through Two-Rooms.
#   collect held-out CoinRun (levels >= 100,000) -> eval coinrun-tiny -> dream (video, atlas,
#   real beside dreamed) -> collect training levels 0-9,999 -> train the three stages briefly
#   -> plan with tworooms-tiny in Two-Rooms episodes it never saw
# Usage: scripts/demo.sh [OUTPUT_DIR]   (make demo uses outputs/demo)
set -euo pipefail

out="${1:-outputs/demo}"
nextworld="${NEXTWORLD:-.venv/bin/nextworld}"
world="${DEMO_WORLD:-coinrun-tiny}"
heldout="$out/data/coinrun-heldout"

rm -rf "$out"
mkdir -p "$out"

echo "== 1/6 collect CoinRun held-out levels 100,000+ (never seen in training)"
"$nextworld" collect coinrun --out "$heldout" --episodes 40 --max-episode-steps 250 --levels 100000:200000 \
    --policy sticky --seed 1

echo "== 2/6 evaluate the shipped world '$world' on them"
"$nextworld" eval "$world" --data "$heldout" --json "$out/eval.json"

echo "== 3/6 dream: play the world from held-out frames"
"$nextworld" dream "$world" --prompt "$heldout:0:0" --actions 0,0,0,0,1,1,1,1,2,2,2,2,3,3,3,3 \
    --out "$out/dream.gif"
"$nextworld" dream "$world" --atlas --prompt "$heldout:0:0" \
    --atlas-prompts "$heldout:0:0;$heldout:5:20;$heldout:11:40" --out "$out/atlas.png"
"$nextworld" dream "$world" --side-by-side --prompt "$heldout:2:0" --frames 16 --out "$out/real_vs_dreamed.mp4"

echo "== 4/6 train the pipeline from scratch on a few-minute budget (coinrun-tiny had an hour)"
"$nextworld" collect coinrun --out "$out/data/coinrun-train" --episodes 100 --max-episode-steps 250 \
    --levels 0:10000 --policy sticky --seed 0
for stage_steps in tokenizer:"${DEMO_TOKENIZER_STEPS:-300}" lam:"${DEMO_LAM_STEPS:-100}" \
                   dynamics:"${DEMO_DYNAMICS_STEPS:-100}"; do
    "$nextworld" train genie --data "$out/data/coinrun-train" --out "$out/run" --preset tiny \
        --stage "${stage_steps%%:*}" --steps "${stage_steps##*:}"
done
"$nextworld" dream "$out/run" --prompt "$heldout:0:0" --actions 0,1,2,3,4,5,6,7 --out "$out/run_dream.gif"

echo "== 5/6 plan in latent space: the shipped JEPA world model tworooms-tiny reaching goals in Two-Rooms"
"$nextworld" plan tworooms-tiny --env tworooms --episodes "${DEMO_PLAN_EPISODES:-10}" --seed 100000 \
    --json "$out/plan.json"

echo "== 6/6 outputs"
cat <<EOF
  held-out data            $heldout                (nextworld info $heldout)
  $world on held-out      $out/eval.json
  its dreams vs real       $out/eval_rollouts.png
  a dream                  $out/dream.gif
  the action atlas         $out/atlas.png
  real beside dreamed      $out/real_vs_dreamed.mp4
  from-scratch run         $out/run                  (tensorboard --logdir $out/run)
  its dream                $out/run_dream.gif
  tworooms-tiny planning   $out/plan.json
  the paths it took        $out/plan_paths.png
EOF
