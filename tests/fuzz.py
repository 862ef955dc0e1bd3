#!/usr/bin/env python3
"""Fuzz ``contrique-video score`` with mutated copies of small valid media.

Every mutated file is scored in its own interpreter::

    python -m contrique_video -q score FILE --weights r18.pt --head head.json --format json --frames 4

with a tiny random ResNet-18 checkpoint and a linear head (fast), and each run is classified:

- ``scored``       exit 0, stdout is one JSON record with a finite score;
- ``clean_error``  exit 1 or 2, stdout empty, exactly one ``contrique-video: error: ...`` line on stderr;

or one of the failures:

- ``crash``        killed by a signal, or an exit code other than 0, 1, 2;
- ``hang``         still running at the timeout (the process group is killed);
- ``traceback``    "Traceback" on stderr, or stderr lines other than the CLI's own (anything that is not
                   a ``contrique-video: ...`` log line or a progress bar: FFmpeg log lines, Python
                   warnings, more than one error line);
- ``bad_output``   exit 0 without exactly one valid record on stdout (or with an error line), or a
                   non-zero exit with something on stdout or without the one-line error.

The CLI's own warnings (``contrique-video: <file>: skipped undecodable data ...``) are its documented
logging and are allowed next to a score or the error line; they are counted, not failed.

Mutations (all deterministic from ``--seed``): truncation at a random offset, 1..64 random byte flips
after the first 64 bytes, a wrong header (first 4/8/16 bytes overwritten), a zero-length file, random
bytes with a media extension, the header kept and the rest zeroed, absurd dimensions in the headers
(MP4 ``tkhd`` and ``avc1``/``hev1`` sample entry, PNG ``IHDR`` with or without a fixed CRC, JPEG SOF,
WebP VP8/VP8X, AVI ``avih``/``strf``), an empty stream (a container whose video stream has no frames;
for stills, the headers without pixel data), a duplicated chunk, and two swapped blocks.

Each child gets an address-space limit (``--mem-limit-mb``, default 4096; 0 for none) so that a file
claiming absurd dimensions cannot take the whole machine; a ``MemoryError`` under that limit shows up
as a traceback.

Usage::

    python tests/fuzz.py --count 300 --seed 0 --jobs 2 --timeout 60 [--keep DIR]

Prints counts per outcome and per mutation kind, lists every failure with a one-line reason, and exits
1 if there was any failure. ``--keep DIR`` keeps the mutated files (and ``results.jsonl``) in DIR.
tests/test_fuzz.py runs a fixed set of cases from this module in CI.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import media  # tests/media.py, beside this file
from checkpoints import random_official_checkpoint


OUTCOMES = ("scored", "clean_error", "crash", "hang", "traceback", "bad_output")
FAILURES = frozenset({"crash", "hang", "traceback", "bad_output"})
ERROR_PREFIX = "contrique-video: error:"
LOG_PREFIX = "contrique-video: "

# --------------------------------------------------------------------------- seeds

# name -> (container kind, make_clip options); the name's extension is the file's.
VIDEO_SEEDS = {
    "h264.mp4": ("mp4", {"codec": "libx264"}),
    "hevc.mp4": ("mp4", {"codec": "libx265"}),
    "h264.mkv": ("mkv", {"codec": "libx264"}),
    "hevc.mkv": ("mkv", {"codec": "libx265"}),
    "vp9.webm": ("webm", {"codec": "libvpx-vp9"}),
    "h264.nut": ("nut", {"codec": "libx264"}),
    "mpeg4.avi": ("avi", {"codec": "mpeg4"}),
    "mpeg4.mp4": ("mp4", {"codec": "mpeg4"}),
}
IMAGE_SEEDS = {
    "still.png": "png",
    "still.jpg": "jpeg",
    "still.webp": "webp",
}
SEED_SIZE = (96, 64)  # frames under 64x64 are refused by design
SEED_FRAMES = 12


@dataclasses.dataclass(frozen=True)
class Seed:
    name: str
    kind: str  # mp4 | mkv | webm | nut | avi | png | jpeg | webp
    data: bytes
    empty: bytes | None  # the same container with no frames / no pixel data

    @property
    def is_video(self) -> bool:
        return self.name in VIDEO_SEEDS

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix


@dataclasses.dataclass
class Workspace:
    directory: Path
    weights: Path
    head: Path
    seeds: dict[str, Seed]


# Matroska/WebM get random segment and track UIDs unless written bit-exact; make_clip does not ask for it,
# so those seeds are remuxed bit-exact here, keeping every run's mutated bytes identical.
_BITEXACT = {"fflags": "+bitexact"}


def _remux_bitexact(src: Path, dst: Path) -> None:
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", container_options=_BITEXACT) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None and not packet.size:
                continue  # the flush packet demux() ends with
            packet.stream = out_stream
            out.mux(packet)


def _empty_video(path: Path, codec: str) -> bytes:
    """A container with a video stream header and no frames (a zero-length stream)."""
    import av

    container = av.open(str(path), "w", container_options=_BITEXACT)
    try:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = *SEED_SIZE, "yuv420p"
        if codec == "libx265":
            stream.codec_context.options = {"x265-params": "log-level=error"}
        container.start_encoding()
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path.read_bytes()


def make_workspace(directory: Path) -> Workspace:
    """Write the checkpoint, the head and the seed media into ``directory`` (seeds whose encoder this
    FFmpeg build lacks are left out)."""
    import numpy as np

    from contrique_video.models.head import LinearHead

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "r18.pt"
    random_official_checkpoint(weights, arch="resnet18")
    rng = np.random.default_rng(0)
    head = directory / "head.json"
    LinearHead(weights=rng.normal(size=1024) * 10, intercept=50.0, name="fuzzhead", features=f"weights:{weights.name}",
               trained_on="random", scale="MOS", range=(0, 100), higher_is_better=True).save(head)
    seeds_dir = directory / "seeds"
    seeds_dir.mkdir(exist_ok=True)
    seeds: dict[str, Seed] = {}
    for name, (kind, options) in VIDEO_SEEDS.items():
        if not media.codec_available(options["codec"]):
            continue
        path = seeds_dir / name
        if kind in ("mkv", "webm"):
            raw = media.make_clip(seeds_dir / f"raw-{name}", size=SEED_SIZE, frames=SEED_FRAMES, **options)
            _remux_bitexact(raw, path)
            raw.unlink()
        else:
            media.make_clip(path, size=SEED_SIZE, frames=SEED_FRAMES, **options)
        empty = _empty_video(seeds_dir / f"empty-{name}", options["codec"])
        seeds[name] = Seed(name, kind, path.read_bytes(), empty)
    for name, kind in IMAGE_SEEDS.items():
        path = media.make_image(seeds_dir / name, size=SEED_SIZE, content="bars")
        data = path.read_bytes()
        seeds[name] = Seed(name, kind, data, _empty_image(kind, data))
    return Workspace(directory, weights, head, seeds)


# --------------------------------------------------------------------------- container helpers


def _mp4_boxes(data: bytes, start: int, end: int):
    """(type, box start, header size, box end) of the boxes in data[start:end]; stops at damage."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos, header, pos + size
        pos += size


_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
_VISUAL_ENTRIES = {b"avc1", b"avc3", b"hev1", b"hvc1", b"mp4v", b"vp09", b"av01"}


def mp4_dimension_fields(data: bytes) -> dict[str, list[int]]:
    """Offsets of the width fields in an MP4: {"tkhd": [...], "sample_entry": [...]} (height follows).

    ``tkhd`` width/height are 32-bit 16.16 fixed point (height at +4); a visual sample entry's are
    16-bit integers (height at +2).
    """
    found: dict[str, list[int]] = {"tkhd": [], "sample_entry": []}

    def walk(start: int, end: int) -> None:
        for kind, pos, header, box_end in _mp4_boxes(data, start, end):
            body = pos + header
            if kind in _MP4_CONTAINERS:
                walk(body, box_end)
            elif kind == b"tkhd" and body < box_end:
                version = data[body]
                offset = body + 4 + (32 if version == 1 else 20) + 52
                if offset + 8 <= box_end:
                    found["tkhd"].append(offset)
            elif kind == b"stsd":
                for entry, epos, eheader, eend in _mp4_boxes(data, body + 8, box_end):
                    if entry in _VISUAL_ENTRIES and epos + 36 <= eend:
                        found["sample_entry"].append(epos + eheader + 24)

    walk(0, len(data))
    return found


def png_chunks(data: bytes):
    """(type, chunk start, data length) of each PNG chunk after the signature."""
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, pos, length
        pos += 12 + length


def jpeg_sof_offset(data: bytes) -> int | None:
    """Offset of the height field of the first SOFn segment (width follows), or None."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return pos + 5 if pos + 9 <= len(data) else None
        if marker == 0xDA:
            return None
        pos += 2 + length
    return None


def riff_chunks(data: bytes, start: int = 12):
    """(fourcc, chunk start, data length) of the chunks of a RIFF file, descending into LIST chunks."""
    pos = start
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        yield kind, pos, length
        if kind == b"LIST":
            pos += 12  # descend: the list's type is 4 bytes, its chunks follow
        else:
            pos += 8 + length + (length & 1)


def _empty_image(kind: str, data: bytes) -> bytes:
    """The still's headers without any pixel data."""
    if kind == "png":
        return data[:8] + b"".join(
            data[pos : pos + 12 + length] for ctype, pos, length in png_chunks(data) if ctype != b"IDAT")
    if kind == "jpeg":
        sos = data.find(b"\xff\xda")
        return data[: sos if sos > 0 else len(data)] + b"\xff\xd9"
    if kind == "webp":
        out = bytearray(data[:12])
        for fourcc, pos, length in riff_chunks(data):
            out += fourcc + (b"\0\0\0\0" if fourcc in (b"VP8 ", b"VP8L") else data[pos + 4 : pos + 8 + length + (length & 1)])
        struct.pack_into("<I", out, 4, len(out) - 8)
        return bytes(out)
    raise ValueError(kind)


# --------------------------------------------------------------------------- mutations

ABSURD_16 = (0, 1, 2, 10_000, 16384, 32768, 65535)
ABSURD_14 = (0, 1, 8192, 10_000, 16383)  # WebP: 14-bit fields
ABSURD_32 = (0, 1, 65535, 100_000, 30_000, 10_000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF)


def _truncate(seed: Seed, rng: random.Random):
    offset = rng.randrange(1, len(seed.data))
    return seed.data[:offset], f"kept {offset} of {len(seed.data)} bytes"


def _flip_bytes(seed: Seed, rng: random.Random):
    data = bytearray(seed.data)
    n = rng.randint(1, 64)
    positions = sorted(rng.sample(range(64, len(data)), min(n, len(data) - 64)))
    for p in positions:
        data[p] ^= rng.randint(1, 255)
    return bytes(data), f"{len(positions)} bytes flipped at {positions[:6]}{'...' if len(positions) > 6 else ''}"


def _wrong_header(seed: Seed, rng: random.Random):
    k = rng.choice((4, 8, 16))
    junk = bytes(b ^ rng.randint(1, 255) for b in seed.data[:k])
    return junk + seed.data[k:], f"first {k} bytes replaced with {junk.hex()}"


def _zero_length(seed: Seed, rng: random.Random):
    return b"", "0 bytes"


def _random_bytes(seed: Seed, rng: random.Random):
    n = rng.choice((1, 7, 64, 1000, 4096, 65536, rng.randint(1, 200_000)))
    return rng.randbytes(n), f"{n} random bytes"


def _zero_tail(seed: Seed, rng: random.Random):
    n = len(seed.data)
    keep = min(rng.choice((4, 8, 16, 32, 64, 128, 512, n // 4, n // 2)), n - 1)
    return seed.data[:keep] + bytes(n - keep), f"kept the first {keep} of {n} bytes, zeroed the rest"


def _dup_chunk(seed: Seed, rng: random.Random):
    data = seed.data
    length = rng.randint(1, min(4096, len(data)))
    start = rng.randrange(0, len(data) - length + 1)
    at = rng.randrange(0, len(data) + 1)
    return data[:at] + data[start : start + length] + data[at:], f"bytes {start}..{start + length} copied to {at}"


def _swap_blocks(seed: Seed, rng: random.Random):
    data = bytearray(seed.data)
    length = rng.randint(1, min(4096, len(data) // 2))
    a = rng.randrange(0, len(data) - 2 * length + 1)
    b = rng.randrange(a + length, len(data) - length + 1)
    data[a : a + length], data[b : b + length] = data[b : b + length], data[a : a + length]
    return bytes(data), f"{length}-byte blocks at {a} and {b} swapped"


def _empty_stream(seed: Seed, rng: random.Random):
    what = "no frames in the video stream" if seed.is_video else "headers only, no pixel data"
    return seed.empty, what


def _absurd_dims(seed: Seed, rng: random.Random):
    data = bytearray(seed.data)
    if seed.kind == "mp4":
        fields = mp4_dimension_fields(seed.data)
        target = rng.choice(("tkhd", "sample_entry", "both"))
        w, h = rng.choice(ABSURD_16), rng.choice(ABSURD_16)
        for off in fields["tkhd"] if target in ("tkhd", "both") else ():
            struct.pack_into(">II", data, off, (w << 16) & 0xFFFFFFFF, (h << 16) & 0xFFFFFFFF)
        for off in fields["sample_entry"] if target in ("sample_entry", "both") else ():
            struct.pack_into(">HH", data, off, w, h)
        return bytes(data), f"{target} width={w} height={h}"
    if seed.kind == "png":
        w, h = rng.choice(ABSURD_32), rng.choice(ABSURD_32)
        struct.pack_into(">II", data, 16, w, h)
        fix = rng.random() < 0.5
        if fix:
            struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
        return bytes(data), f"IHDR width={w} height={h}, CRC {'fixed' if fix else 'stale'}"
    if seed.kind == "jpeg":
        off = jpeg_sof_offset(seed.data)
        h, w = rng.choice(ABSURD_16), rng.choice(ABSURD_16)
        struct.pack_into(">HH", data, off, h, w)
        return bytes(data), f"SOF width={w} height={h}"
    if seed.kind == "webp":
        w, h = rng.choice(ABSURD_14), rng.choice(ABSURD_14)
        done = []
        for fourcc, pos, length in riff_chunks(seed.data):
            body = pos + 8
            if fourcc == b"VP8 " and data[body + 3 : body + 6] == b"\x9d\x01\x2a":
                struct.pack_into("<HH", data, body + 6, w & 0x3FFF, h & 0x3FFF)
                done.append("VP8")
            elif fourcc == b"VP8X":
                cw, ch = max(w, 1) - 1, max(h, 1) - 1
                data[body + 4 : body + 10] = cw.to_bytes(3, "little") + ch.to_bytes(3, "little")
                done.append("VP8X")
            elif fourcc == b"VP8L" and data[body] == 0x2F:
                bits = int.from_bytes(data[body + 1 : body + 5], "little") & ~((1 << 28) - 1)
                bits |= (max(w, 1) - 1) | ((max(h, 1) - 1) << 14)
                data[body + 1 : body + 5] = bits.to_bytes(4, "little")
                done.append("VP8L")
        return bytes(data), f"{'+'.join(done) or 'no header found'} width={w} height={h}"
    if seed.kind == "avi":
        target = rng.choice(("avih", "strf", "avih+strf"))
        w, h = rng.choice(ABSURD_32), rng.choice(ABSURD_32)
        patched = []
        for fourcc, pos, length in riff_chunks(seed.data):
            name = fourcc.decode("latin-1")
            if name in ("avih", "strf") and name in target and name not in patched and length >= 40:
                # avih: dwWidth, dwHeight at +32; strf (BITMAPINFOHEADER, the video stream's): biWidth, biHeight at +4
                struct.pack_into("<II", data, pos + 8 + (32 if name == "avih" else 4), w, h)
                patched.append(name)
        return bytes(data), f"{'+'.join(patched) or 'no header found'} width={w} height={h}"
    raise ValueError(f"no dimension patcher for {seed.kind}")


DIMENSION_KINDS = frozenset({"mp4", "png", "jpeg", "webp", "avi"})

# name -> (mutator, applies to this seed?)
MUTATIONS = {
    "truncate": (_truncate, lambda s: True),
    "flip_bytes": (_flip_bytes, lambda s: len(s.data) > 128),
    "wrong_header": (_wrong_header, lambda s: True),
    "zero_length": (_zero_length, lambda s: True),
    "random_bytes": (_random_bytes, lambda s: True),
    "zero_tail": (_zero_tail, lambda s: True),
    "absurd_dims": (_absurd_dims, lambda s: s.kind in DIMENSION_KINDS),
    "empty_stream": (_empty_stream, lambda s: s.empty is not None),
    "dup_chunk": (_dup_chunk, lambda s: True),
    "swap_blocks": (_swap_blocks, lambda s: len(s.data) >= 4),
}


UNCHANGED = "unchanged"  # not a mutation: the seed as written, for controls


@dataclasses.dataclass(frozen=True)
class Case:
    """One mutated input: ``mutation`` applied to ``seed`` with a random.Random(``rng_seed``)."""

    seed: str
    mutation: str
    rng_seed: int

    @property
    def id(self) -> str:
        return f"{self.seed}-{self.mutation}-{self.rng_seed}"


def mutate(case: Case, seeds: dict[str, Seed]) -> tuple[bytes, str]:
    """The mutated bytes and a one-line description of what was done."""
    seed = seeds[case.seed]
    if case.mutation == UNCHANGED:  # a control: the valid seed itself must score
        return seed.data, "the valid seed file, unchanged"
    mutator, applies = MUTATIONS[case.mutation]
    if not applies(seed):
        raise ValueError(f"{case.mutation} does not apply to {case.seed}")
    return mutator(seed, random.Random(f"{case.id}"))


def make_cases(count: int, seed: int, seeds: dict[str, Seed]) -> list[Case]:
    """``count`` cases, deterministic from ``seed``: every mutation kind once per round (shuffled),
    each on a seed file it applies to, picked at random."""
    rng = random.Random(f"contrique-fuzz:{seed}")
    kinds = list(MUTATIONS)
    order: list[str] = []
    cases = []
    names = sorted(seeds)
    for _ in range(count):
        if not order:
            order = kinds[:]
            rng.shuffle(order)
        mutation = order.pop()
        applicable = [n for n in names if MUTATIONS[mutation][1](seeds[n])]
        cases.append(Case(rng.choice(applicable), mutation, rng.randrange(1_000_000)))
    return cases


# --------------------------------------------------------------------------- running and classifying


@dataclasses.dataclass
class Result:
    outcome: str
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    warnings: int = 0

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES


_PROGRESS = re.compile(r"(\d+%\|)|(\d+(\.\d+)?(frame|it)/s)|(\?(frame|it)/s)|(\|\s*\d+/[\d?]+\s*\[)")


def _stderr_lines(stderr: str) -> list[str]:
    """Non-empty stderr lines, tqdm redraws (\\r) collapsed, progress bars dropped."""
    lines = []
    for raw in stderr.replace("\r\n", "\n").split("\n"):
        parts = [p.strip() for p in raw.split("\r") if p.strip()]
        line = parts[-1] if parts else ""  # what the terminal shows after the redraws
        if line and not _PROGRESS.search(line):
            lines.append(line)
    return lines


def classify(returncode: int | None, stdout: str, stderr: str, timed_out: bool, file: str) -> tuple[str, str, int]:
    """(outcome, one-line reason, number of CLI warning lines) for one run."""
    lines = _stderr_lines(stderr)
    errors = [ln for ln in lines if ln.startswith(ERROR_PREFIX)]
    logs = [ln for ln in lines if ln.startswith(LOG_PREFIX) and not ln.startswith(ERROR_PREFIX)]
    other = [ln for ln in lines if not ln.startswith(LOG_PREFIX)]
    if timed_out:
        return "hang", "no exit before the timeout", len(logs)
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return "crash", f"killed by {name}", len(logs)
    if returncode not in (0, 1, 2):
        return "crash", f"exit code {returncode}", len(logs)
    if "Traceback" in stderr:
        last = other[-1] if other else lines[-1] if lines else ""
        return "traceback", f"traceback: {last[:300]}", len(logs)
    if other:
        return "traceback", f"{len(other)} unexpected stderr line(s), first: {other[0][:300]}", len(logs)
    if returncode == 0:
        if errors:
            return "bad_output", f"exit 0 with an error line: {errors[0][:300]}", len(logs)
        out = [ln for ln in stdout.splitlines() if ln.strip()]
        if len(out) != 1:
            return "bad_output", f"exit 0 with {len(out)} stdout lines", len(logs)
        try:
            record = json.loads(out[0])
        except ValueError:
            return "bad_output", f"exit 0, stdout not JSON: {out[0][:200]}", len(logs)
        score = record.get("score") if isinstance(record, dict) else None
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            return "bad_output", f"exit 0, score is {score!r}", len(logs)
        if record.get("file") != file:
            return "bad_output", f"exit 0, record is for {record.get('file')!r}", len(logs)
        frames = record.get("frames_scored")
        if not isinstance(frames, int) or frames < 1:
            return "bad_output", f"exit 0, frames_scored is {frames!r}", len(logs)
        return "scored", f"score {score:.3f} from {frames} frame(s)", len(logs)
    if stdout.strip():
        return "bad_output", f"exit {returncode} with output on stdout: {stdout.strip()[:200]}", len(logs)
    if len(errors) != 1:
        if errors:
            return "traceback", f"exit {returncode} with {len(errors)} error lines", len(logs)
        return "bad_output", f"exit {returncode} without an error line", len(logs)
    return "clean_error", errors[0][len(ERROR_PREFIX):].strip()[:300], len(logs)


def command(path: Path, ws: Workspace) -> list[str]:
    return [sys.executable, "-m", "contrique_video", "-q", "score", str(path), "--weights", str(ws.weights),
            "--head", str(ws.head), "--format", "json", "--frames", "4"]


def run_file(path: Path, ws: Workspace, timeout: float, mem_limit_mb: int = 4096) -> Result:
    """Score one file in a fresh interpreter and classify the run."""
    started = time.monotonic()
    proc = subprocess.Popen(command(path, ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=ws.directory)
    if mem_limit_mb:
        # Set from here (not preexec_fn, which is unsafe with threads); the child is still importing.
        limit = int(mem_limit_mb) << 20
        try:
            resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, limit))
        except (OSError, ValueError):
            pass
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    outcome, reason, warnings = classify(proc.returncode, stdout, stderr, timed_out, str(path))
    return Result(outcome, reason, proc.returncode, stdout, stderr, time.monotonic() - started, warnings)


def write_case(case: Case, ws: Workspace, directory: Path, index: int | None = None) -> tuple[Path, str]:
    data, detail = mutate(case, ws.seeds)
    seed = ws.seeds[case.seed]
    prefix = f"{index:04d}-" if index is not None else ""
    path = Path(directory) / f"{prefix}{case.mutation}-{Path(case.seed).stem}-{seed.kind}-{case.rng_seed}{seed.suffix}"
    path.write_bytes(data)
    return path, detail


def run_cases(cases: list[Case], ws: Workspace, directory: Path, jobs: int = 2, timeout: float = 60,
              mem_limit_mb: int = 4096, on_result=None) -> list[tuple[Case, Path, str, Result]]:
    """Write and score every case, ``jobs`` at a time; results in the order of ``cases``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [(case, *write_case(case, ws, directory, i)) for i, case in enumerate(cases)]
    results: list = [None] * len(written)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_file, path, ws, timeout, mem_limit_mb): i for i, (_, path, _) in enumerate(written)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            case, path, detail = written[i]
            results[i] = (case, path, detail, future.result())
            if on_result is not None:
                on_result(*results[i])
    return results


def describe_failure(case: Case, path: Path, detail: str, result: Result, stderr_chars: int = 2000) -> str:
    return (f"{path.name}: {result.outcome}: {result.reason}\n  seed {case.seed}, {case.mutation}: {detail}\n"
            f"  exit {result.returncode}, {result.seconds:.1f} s; stderr:\n"
            + "\n".join("    " + ln for ln in result.stderr[-stderr_chars:].splitlines()))


# --------------------------------------------------------------------------- report


def report(results, wall: float) -> str:
    lines = []
    total = {o: 0 for o in OUTCOMES}
    per_kind: dict[str, dict[str, int]] = {}
    per_seed: dict[str, dict[str, int]] = {}
    warned = 0
    for case, _, _, result in results:
        total[result.outcome] += 1
        per_kind.setdefault(case.mutation, {o: 0 for o in OUTCOMES})[result.outcome] += 1
        per_seed.setdefault(case.seed, {o: 0 for o in OUTCOMES})[result.outcome] += 1
        warned += result.warnings > 0
    n = len(results)
    lines.append(f"{n} inputs in {wall:.0f} s ({wall / max(n, 1):.2f} s each, wall clock)")
    lines.append("outcomes: " + ", ".join(f"{o.replace('_', ' ')} {total[o]}" for o in OUTCOMES))
    lines.append(f"runs with CLI warnings on stderr (allowed): {warned}")
    header = f"{'':16}" + "".join(f"{o:>12}" for o in OUTCOMES)
    for title, table in (("per mutation kind", per_kind), ("per seed file", per_seed)):
        lines.append("")
        lines.append(title + ":")
        lines.append(header)
        for key in sorted(table):
            lines.append(f"{key:16}" + "".join(f"{table[key][o]:>12}" for o in OUTCOMES))
    failures = [(c, p, d, r) for c, p, d, r in results if r.failed]
    lines.append("")
    if failures:
        lines.append(f"{len(failures)} failure(s):")
        for case, path, detail, result in failures:
            lines.append(f"  {path.name}: {result.outcome}: {result.reason} [{case.mutation}: {detail}]")
    else:
        lines.append("no failures")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="number of mutated inputs (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs (default 2)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a run counts as a hang (default 60)")
    parser.add_argument("--mem-limit-mb", type=int, default=4096, help="address-space limit per run (0: none)")
    parser.add_argument("--keep", type=Path, help="keep the mutated files and results.jsonl in this folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per input as it finishes")
    args = parser.parse_args(argv)

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="contrique-fuzz-"))
    try:
        ws = make_workspace(work / "workspace")
        cases = make_cases(args.count, args.seed, ws.seeds)
        out_dir = args.keep if args.keep else work / "inputs"
        done = [0]

        def progress(case, path, detail, result):
            done[0] += 1
            if args.verbose or result.failed:
                print(f"[{done[0]}/{len(cases)}] {path.name}: {result.outcome}: {result.reason}", file=sys.stderr, flush=True)
            elif done[0] % 25 == 0:
                print(f"[{done[0]}/{len(cases)}] {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

        print(f"seeds: {', '.join(sorted(ws.seeds))}; {len(cases)} inputs, {args.jobs} at a time, "
              f"timeout {args.timeout:g} s", file=sys.stderr, flush=True)
        results = run_cases(cases, ws, out_dir, jobs=args.jobs, timeout=args.timeout,
                            mem_limit_mb=args.mem_limit_mb, on_result=progress)
        wall = time.monotonic() - started
        if args.keep:
            with open(Path(args.keep) / "results.jsonl", "w", encoding="utf-8") as fh:
                for case, path, detail, result in results:
                    fh.write(json.dumps({"file": path.name, **dataclasses.asdict(case), "detail": detail,
                                         **dataclasses.asdict(result)}) + "\n")
        print(report(results, wall))
        failures = [r for r in results if r[3].failed]
        if failures:
            print("\ndetails:")
            for item in failures:
                print(describe_failure(*item, stderr_chars=1500))
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
