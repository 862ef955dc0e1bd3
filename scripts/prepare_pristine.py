"""Build the pristine image set the built-in model is trained on, from Debian wallpaper packages.

    mkdir -p /tmp/wp && cd /tmp/wp && apt-get download mate-backgrounds plasma-workspace-wallpapers \
        lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 && for f in *.deb; do dpkg -x "$f" x; done
    python scripts/prepare_pristine.py /tmp/wp/x data/pristine

Only the photographs are kept (the packages also hold renders and abstract art); each is downscaled with
an antialiasing filter so its shorter side is 1080 px (2-5x smaller than the source, which removes most
of the source JPEG's artefacts) and stored as 4:4:4 JPEG at quality 95. scikit-image's bundled natural
images of at least 512 px are added. Licences: mate-backgrounds GPL-2+; plasma-workspace-wallpapers
LGPL-3 / CC-BY-SA-4.0; lomiri-wallpapers CC-BY / CC-BY-SA / CC0 (see each package's copyright file);
scikit-image data BSD-3 / CC0 / public domain.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

PHOTOS = [
    # lomiri-wallpapers (Ubuntu wallpaper contest photos)
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus", "Picture_0B_by_freespace",
    "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
    "friends_by_Aitzol_Berasategi", "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
    "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi",
    # mate-backgrounds nature
    "Aqua", "Blinds", "Dune", "Garden", "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower",
    # plasma-workspace-wallpapers photographs
    "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "OneStandsOut", "Path",
    "summer_1am",
]
SKIMAGE = ["astronaut", "hubble_deep_field", "immunohistochemistry", "retina", "brick", "grass", "gravel", "camera"]
SHORT_SIDE = 1080


def find(root: Path, name: str) -> Path:
    """The largest file for a photo: plasma keeps several sizes under NAME/contents/images/."""
    hits = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
            and (p.stem == name or f"/{name}/contents/images/" in p.as_posix())]
    if not hits:
        raise SystemExit(f"photo {name} not found under {root}: extract the four wallpaper packages first")
    return max(hits, key=lambda p: p.stat().st_size)


def save(img: Image.Image, path: Path) -> None:
    img = img.convert("RGB")
    scale = SHORT_SIDE / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    img.save(path, "JPEG", quality=95, subsampling=0)


def main(src: str, dst: str) -> None:
    root, out = Path(src), Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        with Image.open(find(root, name)) as im:
            save(im, out / f"{name}.jpg")
    for name in SKIMAGE:
        arr = getattr(skdata, name)()
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        save(Image.fromarray(arr), out / f"skimage_{name}.jpg")
    print(f"{len(PHOTOS) + len(SKIMAGE)} images in {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
