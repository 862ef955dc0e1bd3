"""The external ffmpeg a user points to (``--ffmpeg``): finding it, running it, and asking what it has.

Also imageio-ffmpeg's bundled binary, used only to read an encoder's option list when no ffmpeg is given.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from contrique_video.errors import EncodeError, InputError


def resolve_ffmpeg(ffmpeg: str | os.PathLike) -> str:
    """The external ffmpeg as an executable path (a name is looked up on PATH)."""
    found = shutil.which(str(ffmpeg))
    if not found:
        raise InputError(f"--ffmpeg {ffmpeg}: no such executable")
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
    """``ffmpeg -h encoder=NAME`` of the user's ffmpeg, else of imageio-ffmpeg's (None if neither exists)."""
    exe = resolve_ffmpeg(ffmpeg) if ffmpeg else _bundled_ffmpeg()
    text = run_ffmpeg(exe, ["-h", f"encoder={encoder}"], f"asking about {encoder}") if exe else None
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
    exe = resolve_ffmpeg(ffmpeg) if ffmpeg else _bundled_ffmpeg()
    if not exe:
        return set()
    text = run_ffmpeg(exe, ["-h", "full"], "listing its options")
    section = text.split("AVCodecContext AVOptions:", 1)[-1].split("\n\n", 1)[0]
    return option_names(section)


def run_ffmpeg(ffmpeg: str, args: list[str], what: str) -> str:
    """Run the external ffmpeg (no shell); a failure is one line with its exit code and last message."""
    try:
        proc = subprocess.run([ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                              capture_output=True, text=True, errors="replace")
    except OSError as exc:
        raise EncodeError(f"could not run {ffmpeg}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise EncodeError(f"ffmpeg exited with code {proc.returncode} while {what}: {last}")
    return proc.stdout
