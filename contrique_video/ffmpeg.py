"""The ffmpeg binary every encode runs: finding it, running it, and asking what it has.

The one given (``--ffmpeg``), else ``ffmpeg`` on PATH, else imageio-ffmpeg's bundled static build
(``pip install 'contrique-video[vmaf]'``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable

from contrique_video.errors import EncodeError, InputError, UnsupportedError


def find_ffmpeg(ffmpeg: str | os.PathLike | None = None) -> str:
    """The ffmpeg to run, as an executable path: ``ffmpeg`` (a path or a name on PATH), else ``ffmpeg`` on
    PATH, else imageio-ffmpeg's; a one-line error when there is none."""
    if ffmpeg:
        found = shutil.which(str(ffmpeg))
        if not found:
            raise InputError(f"--ffmpeg {ffmpeg}: no such executable")
        return found
    found = shutil.which("ffmpeg") or _bundled_ffmpeg()
    if not found:
        raise UnsupportedError("encoding needs the ffmpeg CLI: put ffmpeg on PATH, pass --ffmpeg PATH, or "
                               "pip install 'contrique-video[vmaf]' (imageio-ffmpeg's static build)")
    return found


@functools.lru_cache(maxsize=16)
def ffmpeg_encoders(ffmpeg: str) -> set[str]:
    """The video encoders the binary lists (``ffmpeg -encoders``), asked once per binary."""
    out = run_ffmpeg(ffmpeg, ["-encoders"], "listing its encoders")
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[0].startswith("V"):
            names.add(parts[1])
    return names


@functools.lru_cache(maxsize=16)
def encoder_help(encoder: str, ffmpeg: str | None) -> str | None:
    """``ffmpeg -h encoder=NAME`` of the ffmpeg that encodes (None if it lacks the encoder)."""
    exe = find_ffmpeg(ffmpeg)
    text = run_ffmpeg(exe, ["-h", f"encoder={encoder}"], f"asking about {encoder}")
    return text if text and f"Encoder {encoder}" in text else None  # a build without it: nothing to check against


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def option_names(help_text: str) -> set[str]:
    """The option names of an ``ffmpeg -h`` listing (its ``  -name`` lines), without the dash."""
    return {line.split()[0][1:] for line in help_text.splitlines() if line.startswith("  -") and len(line.split()) > 1}


@functools.lru_cache(maxsize=4)
def generic_codec_options(ffmpeg: str | None) -> set[str]:
    """Options every encoder takes (FFmpeg's AVCodecContext options: g, bf, maxrate, ...)."""
    exe = find_ffmpeg(ffmpeg)
    text = run_ffmpeg(exe, ["-h", "full"], "listing its options")
    section = text.split("AVCodecContext AVOptions:", 1)[-1].split("\n\n", 1)[0]
    return option_names(section)


def run_ffmpeg(ffmpeg: str, args: list[str], what: str, on_progress: Callable[[int], None] | None = None) -> str:
    """Run ffmpeg (no shell); a failure is one line with its exit code and last message. ``on_progress`` is
    told the frames written so far (ffmpeg's ``-progress`` report); the process is stopped if we are."""
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if on_progress is not None:
        cmd += ["-progress", "pipe:1", "-nostats"]
    lines = []
    with tempfile.TemporaryFile("w+", errors="replace") as err:
        try:
            proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=err, text=True, errors="replace")
        except OSError as exc:
            raise EncodeError(f"could not run {ffmpeg}: {exc.strerror or exc}") from None
        try:
            for line in proc.stdout:
                lines.append(line)
                if on_progress is not None and line.startswith("frame="):
                    on_progress(int(line.split("=", 1)[1]))
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err.seek(0)
        last = (err.read().strip().splitlines() or ["no message"])[-1]
    if code != 0:
        raise EncodeError(f"ffmpeg exited with code {code} while {what}: {last}")
    return "".join(lines)


#: Scaling to a display size, as VMAF practice does (ffmpeg's scale filter default), into a lossless file
#: (FFV1 keeps any pixel format), so the scaled copy holds what the scaler made.
UPSCALE = "bicubic"
LOSSLESS = ["-c:v", "ffv1"]


def scale_lossless(src: str | os.PathLike, dst: str | os.PathLike, size: tuple[int, int],
                   ffmpeg: str | os.PathLike | None = None) -> str:
    """``src``'s video resized to ``size`` (width, height) with bicubic filtering, losslessly; returns ``dst``.
    Both ``score --display`` and the ladder's display-size renditions go through it."""
    run_ffmpeg(find_ffmpeg(ffmpeg), ["-i", str(src), "-map", "0:v:0", "-vf", f"scale={size[0]}:{size[1]}:flags={UPSCALE}",
                                     *LOSSLESS, str(dst)], f"scaling {os.path.basename(src)} to {size[0]}x{size[1]}")
    return str(dst)
