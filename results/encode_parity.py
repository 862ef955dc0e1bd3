"""Regenerates results/encode-parity.csv: does `crf-search --encode` write what the ffmpeg CLI writes?

A 4 s 960x540 FFV1 master (a slow pan over skimage's astronaut photo, built with imageio-ffmpeg's ffmpeg)
goes through `contrique-video crf-search --encode` for each encoder; the same ffmpeg then encodes the master
directly at the CRF chosen (`ffmpeg -i master.mkv -c:v ENC -crf N -preset P -pix_fmt yuv420p cli.mp4`).
A row: both sizes, whether every frame has the same type, the encode's score and the target.

    .venv/bin/python results/encode_parity.py [--target 40] [--encoders libx264,libx265]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import imageio_ffmpeg
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
PRESETS = {"libx264": ("-preset", "medium", []), "libx265": ("-preset", "medium", ["-x265-params", "log-level=error"]),
           "libsvtav1": ("-preset", "8", [])}
COLUMNS = ["date", "machine", "commit", "command", "encoder", "source", "crf", "bytes_ours", "bytes_cli",
           "frame_types_match", "score", "target"]


def ff(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def master(folder: Path) -> Path:
    """4 s at 25 fps, 960x540: the photo upscaled to 1080 lines, panned left to right at 30 px/s."""
    photo = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    out = folder / "master.mkv"
    ff("-loop", "1", "-framerate", "25", "-i", str(photo), "-t", "4",
       "-vf", "scale=1080:1080:flags=lanczos,crop=960:540:x='t*30':y=200,format=yuv420p",
       "-c:v", "ffv1", "-g", "1", str(out))
    return out


def frame_types(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [int(f.pict_type) * 2 + bool(f.key_frame) for f in c.decode(video=0)]


def cpu() -> str:
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        return f"{names[0]} x{len(names)}" if names else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=40.0)
    ap.add_argument("--encoders", default="libx264,libx265,libsvtav1")
    ap.add_argument("--out", default=str(ROOT / "results" / "encode-parity.csv"))
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        d = Path(tmp)
        src = master(d)
        for encoder in args.encoders.split(","):
            opt, preset, needs = PRESETS[encoder]
            ours = d / f"ours-{encoder}.mp4"
            cmd = ["contrique-video", "crf-search", src.name, "--encoder", encoder, "--preset", preset,
                   "--target", f"{args.target:g}", "--encode", ours.name, "--format", "ndjson", "-q"]
            run = subprocess.run([sys.executable, "-m", "contrique_video", *cmd[1:]], cwd=d, capture_output=True,
                                 text=True)
            events = [json.loads(x) for x in run.stdout.splitlines()]
            enc = next((e for e in events if e["type"] == "encode"), None)
            if enc is None:
                print(f"{encoder}: no encode ({run.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
                continue
            cli = d / f"cli-{encoder}.mp4"
            ff("-i", str(src), "-c:v", encoder, "-crf", str(enc["crf"]), opt, preset, *needs, "-pix_fmt", "yuv420p",
               str(cli))
            rows.append({"date": datetime.date.today().isoformat(), "machine": cpu(), "commit": commit,
                         "command": " ".join(cmd), "encoder": encoder, "source": "astronaut pan 960x540 4s 25fps FFV1",
                         "crf": enc["crf"], "bytes_ours": enc["bytes"], "bytes_cli": cli.stat().st_size,
                         "frame_types_match": frame_types(ours) == frame_types(cli), "score": round(enc["score"], 3),
                         "target": args.target})
            result = next(e for e in events if e["type"] == "result")
            print(rows[-1], f"probes {result['probes']}, predicted bytes {result['predicted_bytes']}, predicted encode "
                  f"{result['predicted_encode_seconds']} s, took {enc['encode_seconds']} s", file=sys.stderr)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
