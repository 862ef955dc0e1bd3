"""Our encodes are the ffmpeg CLI's: for each encoder and source kind, the frame-type pattern is the same and
the bytes are within 2% of ``ffmpeg -i SRC -c:v ENC -crf N -preset P -pix_fmt yuv420p OUT`` run here directly.

The sources are the kinds that used to force their frame types on an encode: an intra-only FFV1 master, an
intra-only ProRes master, a long-GOP H.264 source (a key frame every 12 frames, no B-frames) and a
variable-frame-rate source. The reference encodes are the CLI's own, never this project's.
"""

from __future__ import annotations

import subprocess

import av
import pytest
from encoding_helpers import real_ffmpeg

from contrique_video.encoding.encode import encode
from contrique_video.ffmpeg import ffmpeg_encoders, find_ffmpeg

PICT = "?IPBSipb"  # AVPictureType: 1 I, 2 P, 3 B, ...
SOURCE = ["-f", "lavfi", "-i", "testsrc2=s=320x180:r=24:d=2"]  # 48 moving frames
SOURCES = {
    "ffv1": (["-c:v", "ffv1", "-g", "1"], "mkv"),
    "prores": (["-c:v", "prores_ks", "-profile:v", "1"], "mov"),
    "longgop": (["-c:v", "libx264", "-crf", "12", "-g", "12", "-bf", "0", "-preset", "ultrafast"], "mp4"),
    "vfr": (["-vf", r"select=not(eq(mod(n\,3)\,1))", "-fps_mode", "vfr", "-c:v", "libx264", "-crf", "12",
             "-preset", "ultrafast"], "mkv"),
}
# encoder -> (CRF, preset, what the CLI needs besides -crf/-preset for a constant-quality encode)
ENCODES = {
    "libx264": (26, "medium", []),
    "libx265": (28, "fast", ["-x265-params", "log-level=error"]),
    "libsvtav1": (40, "10", []),
    "libvpx-vp9": (40, "6", ["-b:v", "0", "-row-mt", "1"]),
    "libaom-av1": (40, "8", ["-b:v", "0", "-row-mt", "1"]),
}
PRESET_OPTION = {"libvpx-vp9": "-cpu-used", "libaom-av1": "-cpu-used"}
DEFAULT_RUN = {("libx264", s) for s in SOURCES} | {("libx265", "ffv1"), ("libsvtav1", "longgop")}
CASES = [pytest.param(e, s, id=f"{e}-{s}", marks=() if (e, s) in DEFAULT_RUN else pytest.mark.slow)
         for e in ENCODES for s in SOURCES]


def ff(*args: str, exe: str | None = None) -> None:
    subprocess.run([exe or real_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    made = {}
    for name, (args, ext) in SOURCES.items():
        made[name] = d / f"{name}.{ext}"
        ff(*SOURCE, *args, str(made[name]))
    return made


def frame_types(path) -> list[str]:
    """Each decoded frame's picture type, with ``k`` on key frames: ['Ik', 'B', 'B', 'P', ...]."""
    with av.open(str(path)) as c:
        return [PICT[f.pict_type] + ("k" if f.key_frame else "") for f in c.decode(video=0)]


def test_sources_are_the_kinds_named(sources):
    assert set(frame_types(sources["ffv1"])) == set(frame_types(sources["prores"])) == {"Ik"}  # intra-only
    longgop = frame_types(sources["longgop"])
    assert [i for i, t in enumerate(longgop) if t == "Ik"] == [0, 12, 24, 36] and set(longgop) == {"Ik", "P"}
    with av.open(str(sources["vfr"])) as c:
        gaps = {round(float(b.time - a.time), 3) for a, b in zip(*(lambda fs: (fs, fs[1:]))(list(c.decode(video=0))))}
    assert len(gaps) > 1  # more than one frame duration


@pytest.mark.parametrize("encoder,source", CASES)
def test_encode_is_the_ffmpeg_cli_encode(sources, tmp_path, encoder, source):
    exe = find_ffmpeg()  # the ffmpeg a user's own command would run (PATH, else imageio-ffmpeg's)
    if encoder not in ffmpeg_encoders(exe):
        pytest.skip(f"this ffmpeg has no {encoder}")
    crf, preset, needs = ENCODES[encoder]
    src = sources[source]
    cli = tmp_path / "cli.mkv"
    ff("-i", str(src), "-c:v", encoder, "-crf", str(crf), PRESET_OPTION.get(encoder, "-preset"), preset, *needs,
       "-pix_fmt", "yuv420p", str(cli), exe=exe)
    ours = encode(src, tmp_path / "ours.mkv", encoder, crf, preset=preset)
    assert frame_types(ours.path) == frame_types(cli)
    assert ours.bytes == pytest.approx(cli.stat().st_size, rel=0.02)
