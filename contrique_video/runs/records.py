"""Writers: per-input records (NDJSON or CSV) and per-frame scores, written so that no finished result is lost.

Every record is flushed and fsynced as soon as its input is done, so a crash, Ctrl-C or SIGTERM leaves
each finished line on disk; ``--resume`` reads the file back and skips inputs it already holds.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pandas as pd

from contrique_video.errors import InputError

SUMMARY_COLUMNS = ["file", "score", "frames_scored", "mean", "harmonic_mean", "min", "max", "median", "p5", "std",
                   "model", "head", "hdr", "warnings", "error"]
FRAME_COLUMNS = ["file", "frame", "pts_time", "score"]


def summary_row(record: dict) -> dict:
    """A flat CSV row from a JSON record (a failure has only ``file`` and ``error``); warnings join with "; "."""
    return {"file": record["file"], "score": record.get("score"), "frames_scored": record.get("frames_scored"),
            **record.get("pooled", {}), "model": record.get("model"), "head": record.get("head"),
            "hdr": record.get("hdr"), "warnings": join_warnings(record.get("warnings")), "error": record.get("error")}


def join_warnings(warnings: list[str] | str | None) -> str | None:
    """A record's warnings as one flat-table cell: joined with "; ", None when there are none."""
    if warnings is None or isinstance(warnings, str):
        return warnings or None
    return "; ".join(warnings) or None


class RecordLog:
    """``--output`` file: one record per input, NDJSON (.jsonl/.ndjson) or CSV (.csv), appended durably."""

    def __init__(self, path: str | os.PathLike, resume: bool):
        self.path = Path(path)
        self.kind = "csv" if self.path.suffix.lower() == ".csv" else "ndjson"
        if self.path.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
            raise InputError(f"--output {self.path}: use a .jsonl, .ndjson or .csv file name")
        self.done: set[str] = self._read() if resume and self.path.exists() else set()
        fresh = not (resume and self.path.exists())
        self._file = open(self.path, "w" if fresh else "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, SUMMARY_COLUMNS) if self.kind == "csv" else None
        if self._csv and fresh:
            self._csv.writeheader()

    def _read(self) -> set[str]:
        """Files already recorded. A last line cut by a crash is dropped (and rewritten without it)."""
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]
            self.path.write_text("".join(lines), encoding="utf-8")
        if self.kind == "csv":
            if not lines:
                return set()
            rows = pd.read_csv(self.path, usecols=["file"], dtype=str)
            return set(rows["file"])
        done = set()
        for n, line in enumerate(lines, 1):
            try:
                done.add(json.loads(line)["file"])
            except (ValueError, KeyError, TypeError):
                raise InputError(f"--resume: line {n} of {self.path} is not a record written by contrique-video") from None
        return done

    def write(self, record: dict) -> None:
        if self._csv:
            self._csv.writerow(summary_row(record))
        else:
            self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class FrameLog:
    """``--csv`` per-frame scores, written as frames are scored to ``NAME.partial``, renamed when the run ends.

    A run that scored nothing removes its partial file and leaves any older file alone.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.partial = Path(f"{path}.partial")
        self._file = open(self.partial, "w", newline="", encoding="utf-8")
        self._file.write(",".join(FRAME_COLUMNS) + "\n")
        self.rows = 0

    def write(self, name: str, rows: pd.DataFrame) -> None:
        rows.assign(file=name)[FRAME_COLUMNS].to_csv(self._file, header=False, index=False, float_format="%.6f")
        self._file.flush()
        self.rows += len(rows)

    def close(self, keep: bool) -> None:
        self._file.close()
        if keep:
            self.partial.replace(self.path)
        else:
            self.partial.unlink()
