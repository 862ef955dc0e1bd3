"""Sharp-detail pristine images drawn here (so free of any licence): text pages, line art and product shots,
small high-contrast details on flat backgrounds, which a head can mistake for noise (issue #30)."""

from __future__ import annotations

import numpy as np

from contrique_video.errors import InputError


def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def generated(kind: str, seed: int, width: int, height: int) -> np.ndarray:
    """A sharp-detail image drawn here (so free of any licence): a text page, line art, or small
    high-contrast objects on white (a product shot)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (width, height), (255, 255, 255) if kind != "lineart" else (250, 250, 246))
    d = ImageDraw.Draw(im)
    words = ("quality grain encoder ladder frame pixel detail sharp texture noise video score source film "
             "camera light shadow colour edge line").split()
    if kind == "text":
        y = 10
        while y < height - 10:
            size = int(rng.integers(10, 30))
            line = " ".join(rng.choice(words, 14))
            colour = tuple(int(v) for v in rng.integers(0, 90, 3))
            d.text((int(rng.integers(5, 40)), y), line, fill=colour, font=_font(size))
            y += size + int(rng.integers(3, 10))
    elif kind == "lineart":
        for _ in range(60):
            pts = rng.uniform([0, 0], [width, height], (int(rng.integers(2, 6)), 2))
            colour = tuple(int(v) for v in rng.integers(0, 200, 3))
            d.line([tuple(p) for p in pts], fill=colour, width=int(rng.integers(1, 4)))
        for x in range(0, width, int(rng.integers(30, 60))):
            d.line([(x, 0), (x, height)], fill=(180, 180, 180), width=1)
        for _ in range(25):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 40)
            d.ellipse([x - r, y - r, x + r, y + r], outline=tuple(int(v) for v in rng.integers(0, 150, 3)), width=2)
    elif kind == "product":
        for _ in range(14):
            x, y = rng.uniform(0, width - 80), rng.uniform(0, height - 80)
            w, h = rng.uniform(20, 110, 2)
            colour = tuple(int(v) for v in rng.integers(0, 255, 3))
            if rng.random() < 0.5:
                d.rounded_rectangle([x, y, x + w, y + h], radius=int(min(w, h) / 4), fill=colour, outline=(20, 20, 20))
            else:
                d.ellipse([x, y, x + w, y + h], fill=colour, outline=(20, 20, 20))
            d.text((x, y + h + 2), " ".join(rng.choice(words, 2)), fill=(30, 30, 30), font=_font(11))
    else:
        raise InputError(f"unknown generated source {kind!r}: text, lineart or product")
    return np.asarray(im)
