"""The built-in model's OpenVINO IR shipped in the package: the same features as a fresh export of its weights
(so the two can never drift), checked by SHA-256 before use, and a first run with it imports no torch."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contrique_video.api import builtin_model, builtin_weights
from contrique_video.backends import open_backend
from contrique_video.backends.openvino import OpenVinoBackend, import_openvino, ir_path, runs_bf16, save_ir
from contrique_video.errors import ModelError
from contrique_video.models.card import checked_ir, read_card

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("openvino")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def precisions() -> list[str]:
    """fp32 everywhere; bf16 where OpenVINO runs it natively (the CPUs whose auto runs it)."""
    return ["fp32", "bf16"] if runs_bf16(import_openvino().Core()) else ["fp32"]


@pytest.mark.parametrize("precision", precisions())
def test_shipped_ir_gives_the_features_of_a_fresh_export(fresh_cache, tmp_path, precision, caplog):
    model = builtin_model()
    shipped = checked_ir(model.card)
    assert shipped.parent == builtin_weights().parent and shipped.with_suffix(".bin").is_file()
    frame = np.random.default_rng(0).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    with caplog.at_level(logging.INFO, logger="contrique_video"):
        cached = open_backend(model, "openvino", precision, threads=1)([frame])  # converted from the shipped IR
    assert any(r.getMessage().startswith("prepared builtin-v4 for OpenVINO") for r in caplog.records)
    assert ir_path(model).is_file()
    as_shipped = OpenVinoBackend(shipped, 1, model.preprocess, precision)([frame])  # compiled as it is
    exported = OpenVinoBackend(save_ir(model, tmp_path / "export.xml", from_export=True), 1, model.preprocess,
                               precision)([frame])  # from the .pt, as a model without an IR
    assert cached.shape == as_shipped.shape == exported.shape == (1, 9056)
    # Measured bit-identical at fp32 and bf16 (the IR's float16 weights are the .pt's); allow fp32 rounding.
    for got in (cached, as_shipped):
        np.testing.assert_allclose(got, exported, rtol=1e-5, atol=1e-6 * np.abs(exported).max())


def _copy_card(tmp_path: Path) -> Path:
    """The built-in card beside a copy of its IR; the weights stay where they are."""
    card = json.loads(builtin_weights().read_text())
    assets = builtin_weights().parent
    card["weights"]["file"] = str(assets / card["weights"]["file"])
    for suffix in (".xml", ".bin"):
        shutil.copy(assets / f"builtin-v4{suffix}", tmp_path / f"builtin-v4{suffix}")
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    return path


def test_a_tampered_ir_is_refused_in_one_line(fresh_cache, tmp_path):
    card = _copy_card(tmp_path)
    assert checked_ir(read_card(card)) == tmp_path / "builtin-v4.xml"  # the untouched copy is accepted
    data = bytearray((tmp_path / "builtin-v4.bin").read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "builtin-v4.bin").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"builtin-v4\.bin has SHA-256 .* not the card's") as err:
        open_backend(card, "openvino", "fp32")
    assert "\n" not in str(err.value) and not list((fresh_cache / "openvino").glob("*.xml"))
    (tmp_path / "builtin-v4.xml").unlink()
    with pytest.raises(ModelError, match="OpenVINO file not found"):
        checked_ir(read_card(card))


def test_a_first_run_with_the_shipped_ir_imports_no_torch(fresh_cache):
    script = ("import sys, numpy as np; from contrique_video.backends import open_backend; "
              "from contrique_video.api import builtin_model; "
              "open_backend(builtin_model(), 'openvino', 'fp32', threads=1)([np.zeros((64, 64, 3), np.uint8)]); "
              "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False" and list((fresh_cache / "openvino").glob("*.xml"))
