#!/usr/bin/env bash
# A train-branch checkpoint judged as the next built-in model (issue #30): built as the shipped model is built
# (float16 weights, OpenVINO IR: scripts/build_builtin.py), every feature cache rebuilt with the build, two head
# recipes fit on it, and the model card's held-out checks run for each at fp32.
#
#   experiments/branch_candidate.sh RUN STEP OUT       e.g. experiments/branch_candidate.sh runs/branch-enc 2000 runs/enc
#
# OUT/build/builtin.json is the candidate's card (id builtin-v4; its default head OUT/build/clive.json is the
# RidgeCV head, written from the CLIVE features first). Heads: OUT/clive-t3.json, clive-v6's recipe (builtin-v4's
# default head: still, noise and grain-clip ranking terms, the clips of tiers 1-2, of 24 soft copies and of tier 3:
# x265, SVT-AV1, x264 -tune grain); OUT/clive-t12.json, the same without tier 3.
# OUT/clive-sc.json (rule 18): clive-t3's recipe fit with the branch read only through its own ranking scorer
# (RUN/last.pt, which must hold the STEP checkpoint's branch); OUT/clive-sa.json (rule 19) with the scorer beside the
# branch's own features. HEADS="t3 t12" (the default) picks heads; CHECKS_ONLY=1 skips the
# build and the caches (already built by an earlier run into OUT) and fits and checks those heads alone.
# Checks per head (OUT/check_NAME_{t12,t3,soft,soft2,soft3}.csv and OUT/summary_NAME.txt): held-out grain tiers 1-2,
# tier 3 and three sets of soft sources, still damage, CLIVE protocol (OUT/protocol_NAME.csv), the CI guard at fp32 and bf16, libvmaf
# agreement on the 30-rendition 360p set, the sample. Caches are resumable; on 2 cores (two lanes) about 60
# minutes. Needs /tmp/wp/x (scripts/prepare_pristine.py) and ../shared/data/clive-train.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 SVT_LOG=1
PY=.venv/bin/python
RUN=${1:?usage: branch_candidate.sh RUN STEP OUT}; STEP=${2:?usage: branch_candidate.sh RUN STEP OUT}; C=${3:?usage: branch_candidate.sh RUN STEP OUT}
MODEL=$RUN/model_step$(printf %06d "$STEP").pt
[ -f "$MODEL" ] || { echo "branch_candidate.sh: no checkpoint $MODEL (train-branch writes one per evaluation)" >&2; exit 1; }
W=/tmp/wp/x; B=$C/build; CARD=$B/builtin.json
T=white_noise,white_noise_color,impulse_noise,multiplicative_noise,ffmpeg_noise,gaussian_blur,lens_blur,motion_blur,jpeg,jpeg2000,rescale,pixelate,crf_libx264,h264,denoise
G=Bridge_by_Sander_Klootwijk,gen:product/100,Storm,gen:text/100,TwoWings,RainDrops,gen:lineart/100
S=Storm~2,TwoWings~3,RainDrops~1.5,Bridge_by_Sander_Klootwijk~2,gen:product/100~2
S2=package:sklearn/datasets/images/china.jpg~2,package:sklearn/datasets/images/flower.jpg~2,ColdRipple~2,Blinds~2.5
S3=GreenMeadow~2,FreshFlower~2,ColorfulCups~2.5,Kite~1.5
GL="$PY experiments/grain_ladders.py --weights $CARD --wallpapers $W"
s() { echo "=== $(date +%T) $*" >&2; }
HEADS=${HEADS:-t3 t12}
mkdir -p "$B"
if [ -z "${CHECKS_ONLY:-}" ]; then

s build
$PY - "$RUN" "$STEP" "$B" <<'PYEOF'
import sys, torch
from contrique_video.models.contrique import read_state_dict
run, step, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
state = read_state_dict(f"{run}/model_step{step:06d}.pt")
torch.save({k[len("branch."):]: v for k, v in state.items() if k.startswith("branch.")}, f"{out}/branch_step{step:06d}.pt")
PYEOF
$PY scripts/build_builtin.py "$B/branch_step$(printf %06d "$STEP").pt" -o "$B/builtin-v4.pt"
$PY - "$RUN" "$STEP" "$B" <<'PYEOF'
import json, sys
from contrique_video.api import builtin_card
from contrique_video.files import sha256_file
from contrique_video.models.card import load_card_model, read_card
run, step, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
card = builtin_card()
card.pop("precisions", None)
card |= {"id": "builtin-v4", "default_head": "clive.json"}
card["weights"] |= {"file": "builtin-v4.pt", "sha256": sha256_file(f"{out}/builtin-v4.pt")}
card["weights"].pop("openvino_ir", None)
card.pop("feature_dim")  # set below from the network: a branch of another width has another size
card["training"] = {"branch_file": f"{run}/branch_step{step:06d}.pt", "branch_file_sha256": sha256_file(f"{out}/branch_step{step:06d}.pt"),
                    "config_as_run": json.load(open(f"{run}/config.json")), "head": "(candidate: written after the head fit)"}
json.dump(card, open(f"{out}/builtin.json", "w"), indent=2)
net = load_card_model(read_card(f"{out}/builtin.json"))
card["feature_dim"] = 2 * net.feature_dim
card["features"] = (f"per scale: the trunk's {net.trunk_dim} (as builtin-v4's), then the quality branch's output "
                    f"({net.branch.feature_dim}): {net.feature_dim}; [full scale | half scale] = {2 * net.feature_dim}")
json.dump(card, open(f"{out}/builtin.json", "w"), indent=2)
PYEOF
$PY scripts/build_builtin.py --openvino "$CARD"

lane_a() {
  s clive; $PY scripts/fit_ranked_head.py --weights $CARD --sources 0 --cache-dir $C --evaluate
  $PY scripts/fit_ranked_head.py --weights $CARD --sources 0 --cache-dir $C --ridge-out $B/clive.json --ridge-name clive --out $C/ridge-unused.json
  s stills; $PY scripts/fit_ranked_head.py --weights $CARD --wallpapers $W --cache-dir $C --sources 30 --types $T
  NS=$($PY -c "from contrique_video.training import degradation as d; p = [n for n in d.FIT if ':' not in n]
print(','.join([n + '#smooth' for n in p[:10]] + [n + '#gray' for n in p[:12]] + ['gen:product/%d' % i for i in range(1, 5)]))")
  s noise; $PY experiments/noise_ladders.py --weights $CARD --wallpapers $W --cache $C/noise_fit.npz --sources "$NS"
  s heldout; $GL --tiers 1,2 --cache $C/grain_heldout.npz --sources $G
  $GL --tiers 3 --cache $C/grain_heldout_t3.npz --sources $G
  s tier3 fit; $GL --tiers 3 --cache $C/f_grain_t3_8f.npz --sources gen:text/0,Garden,Dragonfly_by_Bolly,gen:product/0
  $GL --tiers 3 --cache $C/f_grain_t3a.npz --frames 2 --sources gen:product/1,Wood,LadyBird,gen:text/1,Kleiber_by_Lukas_Baubkus,gen:lineart/0,FallenLeaf,gen:product/2,Path,friends_by_Aitzol_Berasategi
}
lane_b() {
  s fit clips; G2="$GL --tiers 1,2"
  $G2 --cache $C/f_grain_fit.npz --sources gen:text/0,Garden,Dragonfly_by_Bolly,gen:product/0
  $G2 --cache $C/f_grain_fit2a.npz --frames 2 --sources gen:product/1,Wood,LadyBird,gen:text/1,Kleiber_by_Lukas_Baubkus
  $G2 --cache $C/f_grain_fit2b.npz --frames 2 --sources gen:lineart/0,FallenLeaf,gen:product/2,Path,friends_by_Aitzol_Berasategi
  $G2 --cache $C/f_grain_fit3.npz --frames 2 --sources Aqua,gen:product/3,Dune,gen:text/2,EveningGlow,YellowFlower,gen:lineart/2,BytheWater,DarkestHour,OneStandsOut
  $G2 --cache $C/f_grain_fit4.npz --frames 2 --sources sunset_by_Aitzol_Berasategi,gen:product/4,Picture_0B_by_freespace,gen:text/3,skimage:chelsea,life_by_Aitzol_Berasategi,summer_1am,gen:lineart/3
  $G2 --cache $C/f_grain_softa.npz --frames 2 --sources Garden~2,Wood~1.5,LadyBird~3,gen:product/1~2
  $G2 --cache $C/f_grain_softb.npz --frames 2 --sources Aqua~2,Dune~3,EveningGlow~1.5,gen:text/2~2
  $G2 --cache $C/f_grain_softc.npz --frames 2 --sources Dragonfly_by_Bolly~2,Kleiber_by_Lukas_Baubkus~2.5,FallenLeaf~2,Path~1.5,YellowFlower~2,BytheWater~3,gen:lineart/0~2,skimage:chelsea~2
  $G2 --cache $C/f_grain_softd.npz --frames 2 --sources sunset_by_Aitzol_Berasategi~2,DarkestHour~2.5,OneStandsOut~2,Picture_0B_by_freespace~1.5,life_by_Aitzol_Berasategi~2,summer_1am~3,friends_by_Aitzol_Berasategi~2,gen:product/3~2
  $GL --tiers 3 --cache $C/f_grain_t3b.npz --frames 2 --sources Aqua,gen:product/3,Dune,gen:text/2,EveningGlow,YellowFlower,gen:lineart/2,BytheWater,DarkestHour,OneStandsOut,sunset_by_Aitzol_Berasategi,gen:product/4,Picture_0B_by_freespace,gen:text/3,skimage:chelsea,life_by_Aitzol_Berasategi,summer_1am,gen:lineart/3
  s heldout soft; $GL --tiers 1,2 --cache $C/grain_heldout_soft.npz --sources $S
  $GL --tiers 1,2 --cache $C/grain_heldout_soft2.npz --sources $S2
  $GL --tiers 1,2 --cache $C/grain_heldout_soft3.npz --sources $S3
  until [ -f $B/clive.json ]; do sleep 10; done  # lane a's RidgeCV head: vmaf_check and the check score with it
  s vmaf; $PY experiments/vmaf_check.py --size 640x360 --heights 360,240 --crf 24,32,40 --seconds 2 --frames 4 --weights $CARD --out $C/vmaf
  s stills check; $PY -m contrique_video -q degradation-check --weights $CARD --precision fp32 --wallpapers $W --sharp --clips 0 --types $T \
    --cache $C/dcheck.npz --threads 1 -o $C/damage_stills_ridge.csv > /dev/null
}
rm -f $B/clive.json  # written afresh from this build's features
lane_a & A=$!; lane_b & Bp=$!; wait $A; wait $Bp
fi

CL=""; for c in f_grain_fit f_grain_fit2a f_grain_fit2b f_grain_fit3 f_grain_fit4 f_grain_softa f_grain_softb f_grain_softc f_grain_softd; do CL="$CL --clips $C/$c.npz"; done
CL3="$CL"; for c in f_grain_t3_8f f_grain_t3a f_grain_t3b; do CL3="$CL3 --clips $C/$c.npz"; done
R="--noise-stills $C/noise_fit.npz --lam-noise 1 --margin-noise 5 --lam-grain 1 --margin-grain 1 --cap12 8 --lam-cap 3 --lam-source 3 --lam-crf 3 --margin-stills 10 --features builtin-v4"
for name in $HEADS; do
  clips=$CL3; [ $name = t12 ] && clips=$CL
  sc=""
  if [ $name = sc ] || [ $name = sa ]; then
    $PY - "$RUN/last.pt" "$MODEL" <<'PYEOF' || { echo "branch_candidate.sh: $RUN/last.pt has no scorer for step $STEP: no head $name" >&2; continue; }
import sys, torch
last, ckpt = (torch.load(p, map_location="cpu", weights_only=True) for p in sys.argv[1:])
branch = {k.removeprefix("branch."): v for k, v in ckpt.items() if k.startswith("branch.")}
sys.exit(not ("scorer" in last and branch.keys() == last["branch"].keys()
              and all(torch.equal(branch[k], last["branch"][k]) for k in branch)))
PYEOF
    sc="--branch-scorer $RUN/last.pt"; [ $name = sa ] && sc="$sc --branch-scorer-mode add"
  fi
  s fit $name; $PY experiments/fit_grain_head.py --clive $C/feats_clive_builtin-v4.npz --stills $C/feats_fit_builtin-v4.npz $clips $R $sc \
    --name clive-v6 --heldout $C/grain_heldout.npz --heldout $C/grain_heldout_t3.npz --out $C/clive-$name.json --evaluate --csv $C/protocol_$name.csv
  H=$C/clive-$name.json; O=$C/check_$name
  DC="$PY -m contrique_video -q degradation-check --weights $CARD --precision fp32 --head $H --wallpapers $W --sharp --types $T --clips 0 --cache $C/dcheck.npz --threads 1"
  {
    s check $name
    $DC --grain $G --grain-tiers 1,2 --grain-cache $C/grain_heldout.npz -o ${O}_t12.csv
    $DC --grain $G --grain-tiers 3 --grain-cache $C/grain_heldout_t3.npz -o ${O}_t3.csv
    $DC --grain $S --grain-tiers 1,2 --grain-cache $C/grain_heldout_soft.npz -o ${O}_soft.csv
    $DC --grain $S2 --grain-tiers 1,2 --grain-cache $C/grain_heldout_soft2.npz -o ${O}_soft2.csv
    $DC --grain $S3 --grain-tiers 1,2 --grain-cache $C/grain_heldout_soft3.npz -o ${O}_soft3.csv
    $PY experiments/candidate_checks.py --weights $CARD --head $H --vmaf $C/vmaf/features.npz
    $PY -m contrique_video -q score samples/sample.mp4 --weights $CARD --precision fp32 --head $H --format csv
  } > $C/summary_$name.txt
done
s done
