"""A batch's outcomes, and one record schema for every batch output: ``--output``, ``--format csv``, ``--parquet``.

A record is the JSON object of :meth:`~contrique_video.api.VideoScore.record` (a failure has only ``file`` and
``error``). :func:`flat_row` is the one flattener to :data:`COLUMNS`, so the CSV and Parquet tables carry the
same columns. Every record is flushed and fsynced as soon as its input is done, so a crash, Ctrl-C or SIGTERM
leaves each finished line on disk; ``resume`` reads the file back and skips inputs it already holds.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from contrique_video.errors import InputError

if TYPE_CHECKING:
    from contrique_video.api import VideoScore

POOLED = ["mean", "harmonic_mean", "min", "max", "median", "p5", "std"]
COLUMNS = ["file", "score", "frames_scored", *POOLED, "raw_score", "model", "head", "scale", "higher_is_better",
           "sampling", "backend", "hdr", "warnings", "error"]
FRAME_COLUMNS = ["file", "frame", "pts_time", "score"]
RECORD_SUFFIXES = (".jsonl", ".ndjson", ".csv")


@dataclass
class Outcome:
    """One finished input: its result, or the one-line error that kept it from one."""

    index: int  # the input's position in the list given to score_many
    file: str
    result: VideoScore | None = None
    error: str | None = None
    seconds: float | None = None  # wall time of the scoring, where the executor measured it

    def record(self) -> dict:
        """The record written to ``output``: the result's JSON record, or ``{"file", "error"}``."""
        return self.result.record() if self.result is not None else {"file": self.file, "error": self.error}


def flat_row(record: dict) -> dict:
    """A :data:`COLUMNS` row from a JSON record, or from a flat row read back from a CSV ``--output``."""
    flat = {**record, **(record.get("pooled") or {})}
    row = {column: flat.get(column) for column in COLUMNS}
    row["warnings"] = join_warnings(flat.get("warnings"))
    return row


def join_warnings(warnings: list[str] | str | None) -> str | None:
    """A record's warnings as one flat-table cell: joined with "; ", None when there are none."""
    if warnings is None or isinstance(warnings, str):
        return warnings or None
    return "; ".join(warnings) or None


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """A typed table of records, one row per input, :data:`COLUMNS` (what ``--parquet`` writes)."""
    table = pd.DataFrame([flat_row(r) for r in records], columns=COLUMNS)
    for column in ("score", "raw_score", *POOLED):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    table["frames_scored"] = pd.to_numeric(table["frames_scored"], errors="coerce").astype("Int64")
    table["higher_is_better"] = table["higher_is_better"].astype("boolean")
    for column in ("file", "model", "head", "scale", "sampling", "backend", "hdr", "warnings", "error"):
        table[column] = table[column].astype("string")
    return table


def write_parquet(records: Iterable[dict], path: str | os.PathLike) -> Path:
    """Write :func:`records_frame` atomically (beside the target, then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        records_frame(records).to_parquet(tmp, index=False)
    except ImportError:
        tmp.unlink(missing_ok=True)
        raise InputError("--parquet needs pyarrow: pip install 'contrique-video[parquet]'") from None
    tmp.replace(path)
    return path


def read_records(path: str | os.PathLike) -> list[dict]:
    """Records already in an ``--output`` file (NDJSON, or CSV rows)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path, dtype={"file": str, "error": str})
        return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in table.to_dict("records")]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class RecordLog:
    """``--output`` file: one record per input, NDJSON (.jsonl/.ndjson) or CSV (.csv), appended durably.

    Resuming a CSV keeps the columns its header has, so a file begun by an older version stays one table.
    """

    def __init__(self, path: str | os.PathLike, resume: bool):
        self.path = Path(path)
        if self.path.suffix.lower() not in RECORD_SUFFIXES:
            raise InputError(f"--output {self.path}: use a .jsonl, .ndjson or .csv file name")
        self.kind = "csv" if self.path.suffix.lower() == ".csv" else "ndjson"
        append = resume and self.path.exists()
        columns = self._header() if append and self.kind == "csv" else None
        self.done: set[str] = self._read() if append else set()
        self._file = open(self.path, "a" if append else "w", newline="", encoding="utf-8")
        self._csv = None
        if self.kind == "csv":
            self._csv = csv.DictWriter(self._file, columns or COLUMNS, extrasaction="ignore")
            if not columns:
                self._csv.writeheader()

    def _header(self) -> list[str] | None:
        with open(self.path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f), None)

    def _read(self) -> set[str]:
        """Files already recorded. A last line cut by a crash is dropped (and rewritten without it)."""
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]
            self.path.write_text("".join(lines), encoding="utf-8")
        if self.kind == "csv":
            return set(pd.read_csv(self.path, usecols=["file"], dtype=str)["file"]) if lines else set()
        done = set()
        for n, line in enumerate(lines, 1):
            try:
                done.add(json.loads(line)["file"])
            except (ValueError, KeyError, TypeError):
                raise InputError(f"--resume: line {n} of {self.path} is not a record written by contrique-video") from None
        return done

    def write(self, record: dict) -> None:
        if self._csv:
            self._csv.writerow(flat_row(record))
        else:
            self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class FrameLog:
    """``--csv`` per-frame scores, written as inputs finish to ``NAME.partial``, renamed when the run ends.

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

    def close(self) -> None:
        self._file.close()
        if self.rows:
            self.partial.replace(self.path)
        else:
            self.partial.unlink()
