"""Test-wide settings.

The suite runs the eager PyTorch backend unless a test asks for another: ``auto`` on a CPU compiles the
network for every new frame size (a minute or more each), and the tests use dozens of sizes. Exported
ONNX files go to one temporary cache per run instead of the user's ~/.cache.
"""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _backend_and_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CONTRIQUE_VIDEO_BACKEND", "torch")
    mp.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
