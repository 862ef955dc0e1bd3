"""Build the pristine image sets for training (and a held-out set) from redistributable photographs.

    apt-get update
    mkdir -p /tmp/wp && cd /tmp/wp && apt-get download mate-backgrounds plasma-workspace-wallpapers \
        lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 && for f in *.deb; do dpkg -x "$f" x; done
    python scripts/prepare_pristine.py /tmp/wp/x data/pristine

writes ``data/pristine/train`` (the ``--pristine`` folder of ``contrique-video train``) and
``data/pristine/heldout``: about 20% of the *source photographs* (every scale of a photo goes to the same
side), chosen by ``holdout_split(names, 0.2, seed=0)`` and listed in ``scripts/pristine_heldout.txt``. No
image derived from a held-out photo is trained on; degradation checks can use them as unseen content.

Sources, each a registry package, and their licences (see each Debian package's
``/usr/share/doc/PACKAGE/copyright``):

* Debian ``lomiri-wallpapers-16.04`` / ``-20.04`` (Ubuntu wallpaper contest photos), per file as the
  copyright file lists: CC-BY-4.0 (aitzgorri, friends, life, picosdeeuropa, sunset by Aitzol Berasategi;
  Picture_0B, Picture_1A by freespace; Wine by Jakkub Mede), CC-BY-SA-4.0 (Bridge by Sander Klootwijk,
  Dragonfly by Bolly, free by Peter Nerlich), CC-BY-SA-3.0 (Kleiber by Lukas Baubkus), CC0-1.0 (seeding by
  Clements Engelhardt).
* Debian ``mate-backgrounds`` (nature photos): GPL-2+.
* Debian ``plasma-workspace-wallpapers`` (photographs only): LGPLv3 in each wallpaper's metadata.json;
  the Debian copyright file says GPL-2+ for the package.
* PyPI ``scikit-image`` ``skimage.data`` (BSD-3 package): astronaut (NASA, public domain), hubble_deep_field
  (NASA, public domain), immunohistochemistry (no known copyright restrictions), retina (CC0), brick, grass,
  gravel (CC0), camera, coffee, chelsea (CC0 by their photographers), rocket (SpaceX, public domain).
* PyPI ``scikit-learn`` ``sklearn/datasets/images``: china.jpg (CC-BY-2.0, danielbuechele on Flickr) and
  flower.jpg (CC-BY-2.0, vultilion on Flickr), as its README.txt states.
* PyPI ``matplotlib`` ``mpl-data/sample_data/grace_hopper.jpg``: U.S. Navy photograph, public domain.

Looked at and left out: Debian ``gnome-backgrounds`` 43, ``ukui-wallpapers`` and ``lomiri-wallpapers``
hold renders and abstract art, not photographs; the packages above also hold renders, which are skipped.

Each photo is stored at several scales: downscaled with an antialiasing filter so its shorter side is each
of ``SCALES`` that is smaller than the source (2-5x smaller than a wallpaper, which removes most of the
source JPEG's artefacts), and once at its own size when that is under the largest scale; 4:4:4 JPEG at
quality 95. Training cuts random crops from random scales of these (``BatchMaker._region``). Photos whose
shorter side is under ``--min-side`` are skipped: ``train`` needs every image to be at least 2 x ``--crop``
(256 px for ``--crop 128``; build with ``--min-side 448`` for ``--crop 224``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from contrique_video.errors import InputError
from contrique_video.training.degradation import WALLPAPERS, package_path

SKIMAGE = ["astronaut", "hubble_deep_field", "immunohistochemistry", "retina", "brick", "grass", "gravel", "camera",
           "coffee", "chelsea", "rocket"]
#: (output name, Python package, file inside it)
PACKAGE_FILES = [
    ("sklearn_china", "sklearn", "datasets/images/china.jpg"),
    ("sklearn_flower", "sklearn", "datasets/images/flower.jpg"),
    ("matplotlib_grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
]
SCALES = (1080, 720, 480)
HELDOUT_FRACTION = 0.2
HELDOUT_LIST = Path(__file__).with_name("pristine_heldout.txt")


def find(root: Path, name: str) -> Path:
    """The largest file for a photo: plasma keeps several sizes under NAME/contents/images/."""
    hits = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
            and (p.stem == name or f"/{name}/contents/images/" in p.as_posix())]
    if not hits:
        raise SystemExit(f"photo {name} not found under {root}: extract the four wallpaper packages first")
    return max(hits, key=lambda p: p.stat().st_size)


def sources(root: Path) -> dict[str, Image.Image]:
    """Every source photograph by output name, as RGB."""
    out = {}
    for name in WALLPAPERS:  # the list, with each photo's package, is in contrique_video/training/degradation.py
        with Image.open(find(root, name)) as im:
            out[name] = im.convert("RGB")
    for name in SKIMAGE:
        arr = getattr(skdata, name)()
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        out[f"skimage_{name}"] = Image.fromarray(arr[..., :3]).convert("RGB")
    for name, package, rel in PACKAGE_FILES:
        with Image.open(package_path(f"{package}/{rel}")) as im:
            out[name] = im.convert("RGB")
    return out


def scaled(img: Image.Image) -> dict[str, Image.Image]:
    """The photo at each scale smaller than itself (antialiased), or at its own size if under the largest."""
    short = min(img.size)
    out = {}
    for side in SCALES:
        if side < short:
            s = side / short
            out[f"s{side}"] = img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
    if short <= SCALES[0]:
        out[f"s{short}"] = img
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="folder the wallpaper packages were extracted to")
    ap.add_argument("dst", type=Path, help="output folder: DST/train and DST/heldout")
    ap.add_argument("--min-side", type=int, default=256, help="skip photos whose shorter side is smaller")
    args = ap.parse_args()
    from contrique_video.training.train import holdout_split

    try:
        photos = sources(args.src)
    except InputError as exc:
        raise SystemExit(str(exc)) from None
    _, held = holdout_split(list(photos), HELDOUT_FRACTION, seed=0)
    HELDOUT_LIST.write_text("".join(f"{n}\n" for n in held))
    counts = {"train": 0, "heldout": 0}
    for name, img in photos.items():
        if min(img.size) < args.min_side:
            print(f"skipped {name}: {img.width}x{img.height} is under --min-side {args.min_side}")
            continue
        part = "heldout" if name in held else "train"
        folder = args.dst / part
        folder.mkdir(parents=True, exist_ok=True)
        for tag, im in scaled(img).items():
            im.save(folder / f"{name}_{tag}.jpg", "JPEG", quality=95, subsampling=0)
            counts[part] += 1
    print(f"{len(photos)} photos, {len(held)} held out (listed in {HELDOUT_LIST}): "
          f"{counts['train']} images in {args.dst / 'train'}, {counts['heldout']} in {args.dst / 'heldout'}")


if __name__ == "__main__":
    main()
