"""scripts/gpu_bench.py up to the GPU boundary: its --device cpu --tiny mode runs every CPU path of both models."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # ~60 s: runs the whole GPU benchmark script on the CPU
def test_gpu_bench_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--device", "cpu", "--tiny", "-o", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-500:]
    result = json.loads(out.read_text())
    assert [m["model"] for m in result["models"]] == ["resnet50", "builtin"]
    for model in result["models"]:
        rows = {r["path"]: r for r in model["rows"]}
        assert "eager fp32" in rows and "error" not in rows["eager fp32"]
        fp32 = rows["eager fp32"]
        assert fp32["frames_per_s_batch1"] > 0 and 0 < fp32["peak_fraction"]
        assert fp32["min_cosine_vs_cpu_fp32"] > 0.99999  # channels_last fp32 on CPU is the reference's arithmetic
        if "eager bf16" in rows and "error" not in rows["eager bf16"]:
            assert rows["eager bf16"]["min_cosine_vs_cpu_fp32"] > 0.98


def test_gpu_bench_does_not_import_av():
    code = ("import sys, runpy; sys.argv = ['x', '--help']\n"
            "try:\n    runpy.run_path('scripts/gpu_bench.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import contrique_video.models.card, contrique_video.backends.base\nprint('av' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip().splitlines()[-1] == "False", run.stderr[-300:]
