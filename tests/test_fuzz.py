"""Fuzz the `score` command with mutated media: every input must end with a score or a one-line error.

A fixed set of mutated files (truncations, byte flips, wrong headers, zero-length files and streams, random
bytes, absurd dimensions in MP4/PNG/JPEG/WebP/AVI headers, duplicated chunks, swapped blocks) is scored,
each in its own interpreter (`python -m contrique_video -q score FILE --format json --frames 4` with a
tiny random ResNet-18 checkpoint), two at a time. No run may crash, hang past the timeout, print a
traceback or other stray lines on stderr, or exit 0 without a valid JSON record.

The mutators, the runner and the classifier live in tests/fuzz.py, which also runs hundreds of random
cases (`python tests/fuzz.py --count 300`). Cases are named ``<seed file>-<mutation>-<rng seed>``: the
mutated bytes depend on nothing else, so a failing case is reproduced with
``fuzz.mutate(fuzz.Case(seed, mutation, rng_seed), workspace.seeds)``.
"""

from __future__ import annotations

import json
import struct
import zlib

import fuzz
import pytest



Case = fuzz.Case
TIMEOUT_S = 30

# Every mutation kind at least once, over MP4/MKV/WebM/NUT/AVI video and PNG/JPEG/WebP stills, from fixed
# random seeds. Each run is a fresh interpreter that imports torch and scipy (about 4.5 s of CPU), so on 2
# cores the list costs about 2.8 s per case: keep it near 13 cases (under 40 s). The script runs hundreds.
CASES = [
    Case("h264.mp4", fuzz.UNCHANGED, 0),  # control: the valid seed must score
    Case("mpeg4.avi", "truncate", 865546),
    Case("hevc.mkv", "flip_bytes", 5),
    Case("vp9.webm", "wrong_header", 2),
    Case("h264.nut", "zero_length", 0),
    Case("still.webp", "random_bytes", 1),
    Case("mpeg4.mp4", "zero_tail", 6),
    Case("h264.mp4", "absurd_dims", 15),  # tkhd and avc1 width=65535 height=65535
    Case("still.png", "absurd_dims", 7),  # IHDR 2147483648x2147483648, CRC fixed: Pillow's DecompressionBombError
    Case("still.jpg", "absurd_dims", 13),  # SOF 16384x10000 (164 Mpixel): Pillow's DecompressionBombWarning
    Case("h264.mkv", "empty_stream", 0),  # a video track with no frames
    Case("vp9.webm", "dup_chunk", 188213),
    Case("h264.mp4", "swap_blocks", 7),
]

# Known bugs in the scorer, found by this fuzzer: case id -> reason. Marked xfail(strict=True) so CI stays
# green while the bug is visible, and fails as soon as the bug is fixed (then delete the entry).
KNOWN_BUGS: dict[str, str] = {}


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case.id])] if case.id in KNOWN_BUGS else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return fuzz.make_workspace(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def fuzz_results(workspace, request):
    """Run every selected case once, two at a time; {case id: (case, path, detail, result)}."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_mutated_input" and hasattr(item, "callspec")]
    runnable = [c for c in dict.fromkeys(selected) if c.seed in workspace.seeds]
    out_dir = workspace.directory / "inputs"
    results = fuzz.run_cases(runnable, workspace, out_dir, jobs=2, timeout=TIMEOUT_S)
    return {item[0].id: item for item in results}


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_mutated_input(case, fuzz_results):
    if case.id not in fuzz_results:
        pytest.skip(f"no {case.seed} seed here (its encoder is not in this FFmpeg build)")
    _, path, detail, result = fuzz_results[case.id]
    assert not result.failed, "\n" + fuzz.describe_failure(case, path, detail, result)
    if case.mutation == fuzz.UNCHANGED:
        assert result.outcome == "scored", "\n" + fuzz.describe_failure(case, path, detail, result)


def test_cases_cover_every_mutation():
    assert {c.mutation for c in CASES} == set(fuzz.MUTATIONS) | {fuzz.UNCHANGED}
    assert len({c.id for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------- the harness itself (no subprocess)


def test_mutations_are_deterministic(workspace):
    cases = fuzz.make_cases(60, 0, workspace.seeds)
    assert cases == fuzz.make_cases(60, 0, workspace.seeds)
    assert {c.mutation for c in cases} == set(fuzz.MUTATIONS)
    for case in cases:
        data, detail = fuzz.mutate(case, workspace.seeds)
        assert (data, detail) == fuzz.mutate(case, workspace.seeds)
        assert detail
        if case.mutation not in ("swap_blocks", "empty_stream"):
            assert data != workspace.seeds[case.seed].data, case


def test_absurd_dimension_patches_land_on_the_header_fields(workspace):
    seeds = workspace.seeds
    png, _ = fuzz.mutate(Case("still.png", "absurd_dims", 3), seeds)
    width, height = struct.unpack_from(">II", png, 16)
    assert (width, height) != (96, 64) and png[12:16] == b"IHDR"
    mp4 = seeds["h264.mp4"].data
    fields = fuzz.mp4_dimension_fields(mp4)
    assert [struct.unpack_from(">II", mp4, o) for o in fields["tkhd"]] == [(96 << 16, 64 << 16)]
    assert [struct.unpack_from(">HH", mp4, o) for o in fields["sample_entry"]] == [(96, 64)]
    for rng_seed in range(12):
        patched, detail = fuzz.mutate(Case("h264.mp4", "absurd_dims", rng_seed), seeds)
        target, w, h = detail.split()[0], int(detail.split("width=")[1].split()[0]), int(detail.split("height=")[1])
        tkhd = struct.unpack_from(">II", patched, fields["tkhd"][0])
        entry = struct.unpack_from(">HH", patched, fields["sample_entry"][0])
        assert tkhd == (((w << 16) & 0xFFFFFFFF, (h << 16) & 0xFFFFFFFF) if target in ("tkhd", "both") else (96 << 16, 64 << 16))
        assert entry == ((w, h) if target in ("sample_entry", "both") else (96, 64))
    # PNG: with "CRC fixed" the IHDR checksum matches the new fields, with "stale" it is the old one.
    for rng_seed in range(8):
        patched, detail = fuzz.mutate(Case("still.png", "absurd_dims", rng_seed), seeds)
        crc_ok = struct.unpack_from(">I", patched, 29)[0] == zlib.crc32(patched[12:29])
        assert crc_ok == ("CRC fixed" in detail)


def _classify(rc, stdout="", stderr="", timed_out=False, file="in.mp4"):
    return fuzz.classify(rc, stdout, stderr, timed_out, file)[0]


def test_classifier():
    record = json.dumps({"file": "in.mp4", "score": 42.0, "frames_scored": 4})
    assert _classify(0, record + "\n") == "scored"
    warn = "contrique-video: in.mp4: skipped undecodable data (Invalid data found when processing input)\n"
    assert _classify(0, record + "\n", warn) == "scored"  # the CLI's own warnings are allowed
    assert _classify(1, "", "contrique-video: error: in.mp4: no video frame could be decoded\n") == "clean_error"
    assert _classify(1, "", warn + "contrique-video: error: in.mp4: no video frame could be decoded\n") == "clean_error"
    bar = "in.mp4:  50%|#####     | 2/4 [00:01<00:01,  1.90frame/s]\r" + " " * 40 + "\r"
    assert _classify(1, "", bar + "contrique-video: error: in.mp4: x\n") == "clean_error"  # progress bars are fine
    assert _classify(1, "", "Traceback (most recent call last):\n  File ...\nValueError: x\n") == "traceback"
    assert _classify(1, "", "[h264 @ 0x1] error while decoding MB\ncontrique-video: error: in.mp4: x\n") == "traceback"
    assert _classify(1, "", "contrique-video: error: a\ncontrique-video: error: b\n") == "traceback"
    assert _classify(-11) == "crash" and _classify(134) == "crash" and _classify(-9, timed_out=True) == "hang"
    assert _classify(0, json.dumps({"file": "in.mp4", "score": float("nan"), "frames_scored": 4})) == "bad_output"
    assert _classify(0, "") == "bad_output" and _classify(0, "not json") == "bad_output"
    assert _classify(0, record + "\n" + record + "\n") == "bad_output"
    assert _classify(1, record, "contrique-video: error: x\n") == "bad_output"
    assert _classify(1, "", "") == "bad_output"
