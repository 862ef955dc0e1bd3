#!/usr/bin/env bash
# clive-v6's recipe: clive-v5's recipe (step 3 of experiments/grain_results.sh, same lambdas and margins) with more
# pair sources of the kinds clive-v5 misses on held-out content, FIT content only (issue 30): noise ladders of the
# remaining FIT photos as #gray and #smooth copies and of generated product (seeds 5-12), line-art and text (4-11)
# images, and still damage ladders (the same 15 types) of generated line-art, product and text seeds 4-11.
# Regenerates results/extra_pairs.csv. Needs grain_results.sh's caches in CACHE (default runs/), the wallpapers in
# /tmp/wp/x and ../shared/data/clive-train. CPU only: about 8 min of extraction and 15 min of fits on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
PY=.venv/bin/python
M=${CACHE:-runs}
T=white_noise,white_noise_color,impulse_noise,multiplicative_noise,ffmpeg_noise,gaussian_blur,lens_blur,motion_blur,jpeg,jpeg2000,rescale,pixelate,crf_libx264,h264,denoise
NS=$($PY -c "from contrique_video.training import degradation as d; p = [n for n in d.FIT if ':' not in n]
print(','.join([n + '#gray' for n in p[12:]] + [n + '#smooth' for n in p[10:]] + ['gen:product/%d' % i for i in range(5, 13)]
               + ['gen:%s/%d' % (k, i) for k in ('lineart', 'text') for i in range(4, 12)]))")
GS=$($PY -c "print(','.join('gen:%s/%d' % (k, i) for k in ('lineart', 'product', 'text') for i in range(4, 12)))")
$PY experiments/noise_ladders.py --wallpapers /tmp/wp/x --cache runs/noise_fit6.npz --sources "$NS"
$PY experiments/noise_ladders.py --cache runs/stills_gen6.npz --types $T --sources "$GS"
C=""; for c in f_grain_fit f_grain_fit2a f_grain_fit2b f_grain_fit3 f_grain_fit4; do C="$C --clips $M/$c.npz"; done
$PY experiments/fit_grain_head.py --clive $M/feats_clive_builtin-v3.npz --stills $M/feats_fit_builtin-v3.npz \
    --extra-stills runs/stills_gen6.npz $C --noise-stills $M/noise_fit.npz --noise-stills runs/noise_fit6.npz \
    --lam-noise 1 --margin-noise 5 --lam-grain 1 --margin-grain 1 --cap12 8 --lam-cap 3 --lam-source 3 --lam-crf 3 \
    --margin-stills 10 --name clive-v6 --heldout $M/grain_heldout.npz --out runs/clive-v6.json
# the CLIVE protocol for RidgeCV, clive-v5's and clive-v6's recipes on the same splits; the checks of the full fits,
# the shipped clive-v5 and clive-v3 and the written clive-v6.json
$PY experiments/fit_mlp_head.py --cache $M --heldout-cache $M --evaluate --splits 10 --seed 0 --configs '' \
    --extra-stills runs/stills_gen6.npz --extra-noise runs/noise_fit6.npz --extra-name clive-v6 --heads runs/clive-v6.json \
    --vmaf $M/vmaf/features.npz --sample runs/sample_feature.npz --csv results/extra_pairs.csv
sed -i "s#$M#CACHE_DIR#g; s#runs/#CACHE_DIR/#g" results/extra_pairs.csv
