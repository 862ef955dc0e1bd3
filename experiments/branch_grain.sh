#!/usr/bin/env bash
# A quality branch retrained with grain ladders (train-branch --grain-share, issue 30) next to the shipped
# builtin-v3 + clive-v5: the same features, head recipe and checks as experiments/grain_results.sh, for one
# checkpoint of a train-branch run.
#
#   experiments/branch_grain.sh RUN STEP [clive|all]     e.g. experiments/branch_grain.sh runs/branch-grain 2000
#
# clive: the CLIVE protocol (10 random 80/20 splits, RidgeCV on MOS alone) for the checkpoint and for the built-in
# model (minutes). all (default): also the still, noise and grain-clip features of grain_results.sh steps 1-2, the
# held-out degradation check's features, libvmaf agreement renditions, then clive-v5's recipe refit on the new
# features and fit_mlp_head.py's evaluation (CLIVE protocol, held-out grain metrics, damage check, sample, libvmaf)
# of it and of the shipped builtin-v3 + clive-v5 (hours; every feature is cached, so a rerun resumes).
# The checkpoint's card is RUN/card_stepNNNNNN.json; its caches and results go to runs/branch-grain-eval/<card id>/;
# the built-in model's caches are BASE (default runs/, as grain_results.sh writes them).
# Needs /tmp/wp/x (scripts/prepare_pristine.py) and ../shared/data/clive-train. CPU only, one thread.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
PY=.venv/bin/python
RUN=${1:?usage: branch_grain.sh RUN STEP [clive|all]}
STEP=${2:?usage: branch_grain.sh RUN STEP [clive|all]}
PART=${3:-all}
BASE=${BASE:-runs}
W=/tmp/wp/x
# the checkpoint's card: the run's card.json (train-branch writes it beside the latest model) pointed at STEP's model
CARD=$($PY - "$RUN" "$STEP" <<'PYEOF'
import json, sys
from pathlib import Path
from contrique_video.files import sha256_file
run, step = Path(sys.argv[1]), int(sys.argv[2])
model = run / f"model_step{step:06d}.pt"
if not model.is_file():
    sys.exit(f"no {model}")
card = json.loads((run / "card.json").read_text())
card |= {"id": f"{run.name}-step{step}", "weights": {"file": model.name, "sha256": sha256_file(model)}}
card["training"]["branch"] = f"contrique-video train-branch, {step} steps"
path = run / f"card_step{step:06d}.json"
path.write_text(json.dumps(card, indent=2) + "\n")
print(path)
PYEOF
)
TAG=$(basename "$RUN")-step$STEP
C=runs/branch-grain-eval/$TAG
mkdir -p "$C" "$BASE"
echo "card $CARD, caches $C" >&2
# CLIVE protocol, MOS alone: the checkpoint, then the built-in model
$PY scripts/fit_ranked_head.py --weights "$CARD" --sources 0 --cache-dir "$C" --evaluate
$PY scripts/fit_ranked_head.py --weights contrique_video/assets/builtin.json --sources 0 --cache-dir "$BASE" --evaluate
[ "$PART" = clive ] && exit 0
T=white_noise,white_noise_color,impulse_noise,multiplicative_noise,ffmpeg_noise,gaussian_blur,lens_blur,motion_blur,jpeg,jpeg2000,rescale,pixelate,crf_libx264,h264,denoise
# 1-2. the features of grain_results.sh steps 1-2 with the checkpoint
$PY scripts/fit_ranked_head.py --weights "$CARD" --wallpapers $W --cache-dir "$C" --sources 30 --types $T
NS=$($PY -c "from contrique_video.training import degradation as d; p = [n for n in d.FIT if ':' not in n]
print(','.join([n + '#smooth' for n in p[:10]] + [n + '#gray' for n in p[:12]] + ['gen:product/%d' % i for i in range(1, 5)]))")
$PY experiments/noise_ladders.py --weights "$CARD" --wallpapers $W --cache "$C/noise_fit.npz" --sources "$NS"
GL="$PY experiments/grain_ladders.py --weights $CARD --wallpapers $W --tiers 1"
$GL --cache "$C/f_grain_fit.npz" --sources gen:text/0,Garden,Dragonfly_by_Bolly,gen:product/0
$GL --cache "$C/f_grain_fit2a.npz" --frames 2 --sources gen:product/1,Wood,LadyBird,gen:text/1,Kleiber_by_Lukas_Baubkus
$GL --cache "$C/f_grain_fit2b.npz" --frames 2 --sources gen:lineart/0,FallenLeaf,gen:product/2,Path,friends_by_Aitzol_Berasategi
$GL --cache "$C/f_grain_fit3.npz" --frames 2 \
    --sources Aqua,gen:product/3,Dune,gen:text/2,EveningGlow,YellowFlower,gen:lineart/2,BytheWater,DarkestHour,OneStandsOut
$GL --cache "$C/f_grain_fit4.npz" --frames 2 \
    --sources sunset_by_Aitzol_Berasategi,gen:product/4,Picture_0B_by_freespace,gen:text/3,skimage:chelsea,life_by_Aitzol_Berasategi,summer_1am,gen:lineart/3
G=Bridge_by_Sander_Klootwijk,gen:product/100,Storm,gen:text/100,TwoWings,RainDrops,gen:lineart/100
$GL --cache "$C/grain_heldout.npz" --sources $G
# 3. clive-v5's recipe refit on the checkpoint's features
CL=""; for c in f_grain_fit f_grain_fit2a f_grain_fit2b f_grain_fit3 f_grain_fit4; do CL="$CL --clips $C/$c.npz"; done
$PY experiments/fit_grain_head.py --clive "$C/feats_clive_$TAG.npz" --stills "$C/feats_fit_$TAG.npz" $CL \
    --noise-stills "$C/noise_fit.npz" --lam-noise 1 --margin-noise 5 --lam-grain 1 --margin-grain 1 --cap12 8 --lam-cap 3 \
    --lam-source 3 --lam-crf 3 --margin-stills 10 --name "clive-v5-$TAG" --features "$TAG" --heldout "$C/grain_heldout.npz" \
    --out "$C/clive-v5-recipe.json" --evaluate --csv "$C/protocol.csv"
# the held-out degradation check (its feature cache is what fit_mlp_head.py's damage check reads)
$PY -m contrique_video -q degradation-check --weights "$CARD" --head "$C/clive-v5-recipe.json" --wallpapers $W --sharp \
    --clips 0 --types $T --cache "$C/dcheck.npz" --grain $G --grain-cache "$C/grain_heldout.npz" --threads 1 \
    -o "$C/damage_check.csv"
# libvmaf agreement renditions (features.npz), the checkpoint's and, if missing, the built-in model's: the same
# 30-rendition set for both (results/vmaf-agreement.csv's; vmaf_check.py's defaults make another, 720p set)
VM="--size 640x360 --heights 360,240 --crf 24,32,40 --seconds 2 --frames 4"
$PY experiments/vmaf_check.py $VM --weights "$CARD" --head "$C/clive-v5-recipe.json" --out "$C/vmaf"
[ -f "$BASE/vmaf/features.npz" ] || $PY experiments/vmaf_check.py $VM --out "$BASE/vmaf"
# 4. fit_mlp_head.py's evaluation, linear recipe only (--configs ''): the checkpoint, then the shipped model and heads
$PY experiments/fit_mlp_head.py --weights "$CARD" --cache "$C" --heldout-cache "$C" --vmaf "$C/vmaf/features.npz" \
    --sample "$C/sample_feature.npz" --configs '' --evaluate --csv "$C/compare.csv"
$PY experiments/fit_mlp_head.py --cache "$BASE" --heldout-cache "$BASE" --vmaf "$BASE/vmaf/features.npz" \
    --sample "$BASE/sample_feature.npz" --configs '' --evaluate --csv "$C/compare.csv"
