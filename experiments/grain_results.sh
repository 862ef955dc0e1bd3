#!/usr/bin/env bash
# Regenerates results/grain_protocol.csv, results/grain_heldout.csv and results/damage_check.csv (issue 30).
# Needs the Debian wallpaper packages extracted to /tmp/wp/x (see scripts/prepare_pristine.py) and
# ../shared/data/clive-train. CPU only; hours on 2 shared cores (feature extraction dominates, all cached in runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
PY=.venv/bin/python
T=white_noise,white_noise_color,impulse_noise,multiplicative_noise,ffmpeg_noise,gaussian_blur,lens_blur,motion_blur,jpeg,jpeg2000,rescale,pixelate,crf_libx264,h264,denoise
# 1. features: CLIVE and the still ladders of the 30 FIT photos; noise ladders of flat crops, grey-level
#    photos and generated product shots of FIT sources (experiments/noise_ladders.py)
$PY scripts/fit_ranked_head.py --weights contrique_video/assets/builtin.json --wallpapers /tmp/wp/x --cache-dir runs --sources 30 --types $T
NS=$($PY -c "from contrique_video.training import degradation as d; p = [n for n in d.FIT if ':' not in n]
print(','.join([n + '#smooth' for n in p[:10]] + [n + '#gray' for n in p[:12]] + ['gen:product/%d' % i for i in range(1, 5)]))")
$PY experiments/noise_ladders.py --wallpapers /tmp/wp/x --cache runs/noise_fit.npz --sources "$NS"
# 2. grain clips: FIT sources (8 frames for 4, 2 frames for the others; tier 1) and held-out sources (8 frames)
$PY experiments/grain_ladders.py --wallpapers /tmp/wp/x --cache runs/f_grain_fit.npz --tiers 1 \
    --sources gen:text/0,Garden,Dragonfly_by_Bolly,gen:product/0
$PY experiments/grain_ladders.py --wallpapers /tmp/wp/x --cache runs/f_grain_fit2a.npz --frames 2 --tiers 1 \
    --sources gen:product/1,Wood,LadyBird,gen:text/1,Kleiber_by_Lukas_Baubkus
$PY experiments/grain_ladders.py --wallpapers /tmp/wp/x --cache runs/f_grain_fit2b.npz --frames 2 --tiers 1 \
    --sources gen:lineart/0,FallenLeaf,gen:product/2,Path,friends_by_Aitzol_Berasategi
$PY experiments/grain_ladders.py --wallpapers /tmp/wp/x --cache runs/f_grain_fit3.npz --frames 2 --tiers 1 \
    --sources Aqua,gen:product/3,Dune,gen:text/2,EveningGlow,YellowFlower,gen:lineart/2,BytheWater,DarkestHour,OneStandsOut
$PY experiments/grain_ladders.py --wallpapers /tmp/wp/x --cache runs/f_grain_fit4.npz --frames 2 --tiers 1 \
    --sources sunset_by_Aitzol_Berasategi,gen:product/4,Picture_0B_by_freespace,gen:text/3,skimage:chelsea,life_by_Aitzol_Berasategi,summer_1am,gen:lineart/3
G=Bridge_by_Sander_Klootwijk,gen:product/100,Storm,gen:text/100,TwoWings,RainDrops,gen:lineart/100
$PY experiments/grain_ladders.py --wallpapers /tmp/wp/x --cache runs/grain_heldout.npz --tiers 1 --sources $G
# 3. the shipped head clive-v5 (assets/heads/clive-v5.json is runs/clive-v5.json) and the CLIVE protocol (10 random 80/20 splits): RidgeCV, clive-v3's recipe (its 10 FIT photos), clive-v5's recipe
C=""; for c in f_grain_fit f_grain_fit2a f_grain_fit2b f_grain_fit3 f_grain_fit4; do C="$C --clips runs/$c.npz"; done
FIT="$C --noise-stills runs/noise_fit.npz --lam-noise 1 --margin-noise 5 --lam-grain 1 --margin-grain 1 --cap12 8 --lam-cap 3 --lam-source 3 --lam-crf 3 --margin-stills 10 --name clive-v5"
$PY experiments/fit_grain_head.py $FIT --heldout runs/grain_heldout.npz --out runs/clive-v5.json --evaluate --csv runs/protocol_v5.csv
grep ',heldout_clips\.' runs/protocol_v5.csv >> results/grain_heldout.csv
grep ',clive_median_' runs/protocol_v5.csv >> results/grain_protocol.csv
# 4. the degradation check before/after: held-out stills (+ generated sharp-detail images) and held-out grain clips
for h in clive-v3 clive-v4 clive-v5 clive; do
  $PY -m contrique_video -q degradation-check --wallpapers /tmp/wp/x --sharp --clips 0 --types $T --cache runs/dcheck.npz \
      --grain $G --grain-cache runs/grain_heldout.npz --head $h --threads 1 -o results/damage_check.csv
done
# 5. other encoders (tier 3) and soft copies of the held-out sources, at fp32, each in a cache of its own
S=Storm~2,TwoWings~3,RainDrops~1.5,Bridge_by_Sander_Klootwijk~2,gen:product/100~2
for h in clive-v3 clive-v4 clive-v5 clive; do
  for part in "t3 $G 3" "soft $S 1,2"; do
    set -- $part
    rm -f runs/damage_$1_$h.csv
    $PY -m contrique_video -q degradation-check --precision fp32 --wallpapers /tmp/wp/x --sharp --clips 0 --types $T \
        --cache runs/dcheck.npz --grain $2 --grain-tiers $3 --grain-cache runs/grain_heldout_$1.npz --head $h --threads 1 \
        -o runs/damage_$1_$h.csv
    label=$([ "$1" = t3 ] && echo grain_clips_tier3 || echo grain_clips_soft)
    grep ',grain_clips\.' runs/damage_$1_$h.csv | sed "s/,grain_clips\./,$label./" >> results/damage_check.csv
  done
done
# the CSVs name the cache folder CACHE_DIR, not this machine's runs/
sed -i 's#runs/#CACHE_DIR/#g; s#/tmp/wp/x#WALLPAPER_DIR#g' results/grain_protocol.csv results/grain_heldout.csv results/damage_check.csv
