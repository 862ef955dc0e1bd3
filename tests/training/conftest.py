"""Tiny training folders shared by the training tests: pristine photos, authentic JPEGs and their MOS table."""

import numpy as np
import pytest
from PIL import Image
from skimage import data


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    (d / "pristine").mkdir()
    (d / "authentic").mkdir()
    for i, img in enumerate([data.astronaut(), data.coffee(), data.chelsea()]):
        Image.fromarray(img).resize((160, 160)).save(d / "pristine" / f"p{i}.png")
    rng = np.random.default_rng(0)
    rows = ["image,mos"]
    for i in range(10):
        img = Image.fromarray(data.rocket()).crop((i * 20, 0, i * 20 + 150, 150))
        img.save(d / "authentic" / f"a{i}.jpg", quality=int(20 + 8 * i))
        rows.append(f"a{i}.jpg,{rng.uniform(0, 100):.2f}")
    (d / "mos.csv").write_text("\n".join(rows) + "\n")
    return d


@pytest.fixture
def interrupt(monkeypatch):
    """``interrupt(module, name, step, run)``: calls ``run()`` with the per-step schedule ``module.name``
    (called as ``(step, cfg)``) raising KeyboardInterrupt at ``step``, as Ctrl-C would, then restores it."""

    def run_until(module, name: str, step: int, run) -> None:
        real = getattr(module, name)

        def stop(at, cfg):
            if at == step:
                raise KeyboardInterrupt
            return real(at, cfg)

        monkeypatch.setattr(module, name, stop)
        try:
            with pytest.raises(KeyboardInterrupt):
                run()
        finally:
            monkeypatch.setattr(module, name, real)

    return run_until
