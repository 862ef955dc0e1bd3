"""A batch's outcomes, and one record schema for every batch output: ``--output``, ``--format csv``, ``--parquet``.

A record is the JSON object of :meth:`~contrique_video.api.VideoScore.record` (a failure has only ``file`` and
``error``). :func:`flat_row` is the one flattener to :data:`COLUMNS` (and, for runs with a reference,
:data:`VMAF_COLUMNS` after them), so the CSV and Parquet tables carry the same columns. Every record is flushed and fsynced as soon as its input is done, so a crash, Ctrl-C or SIGTERM
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

from contrique_video.extras import require
from contrique_video.errors import InputError, UsageError

if TYPE_CHECKING:
    from contrique_video.api import VideoScore

POOLED = ["mean", "harmonic_mean", "min", "max", "median", "p5", "std"]
COLUMNS = ["file", "score", "frames_scored", *POOLED, "raw_score", "model", "head", "scale", "higher_is_better",
           "sampling", "pooling", "backend", "hdr", "warnings", "error"]
# With a reference (score --reference): VMAF over the scored frames, its pooled values, libvmaf's mean over every
# frame, and what it was measured with (see contrique_video.encoding.reference.add_vmaf).
VMAF_POOLED = ["min", "max", "harmonic_mean", "p5", "p1"]
VMAF_COLUMNS = ["vmaf", *(f"vmaf_{how}" for how in VMAF_POOLED), "vmaf_all_frames", "vmaf_model", "reference"]
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


def record_columns(vmaf: bool) -> list[str]:
    """The flat tables' columns: :data:`COLUMNS`, then :data:`VMAF_COLUMNS` for a run with a reference."""
    return COLUMNS + VMAF_COLUMNS if vmaf else list(COLUMNS)


def flat_row(record: dict, columns: list[str] = COLUMNS) -> dict:
    """A ``columns`` row from a JSON record, or from a flat row read back from a CSV ``--output``."""
    vmaf = {f"vmaf_{how}": value for how, value in (record.get("vmaf_pooled") or {}).items()}
    flat = {**vmaf, **record, **(record.get("pooled") or {})}
    row = {column: flat.get(column) for column in columns}
    if "warnings" in row:
        row["warnings"] = join_warnings(flat.get("warnings"))
    return row


def join_warnings(warnings: list[str] | str | None) -> str | None:
    """A record's warnings as one flat-table cell: joined with "; ", None when there are none."""
    if warnings is None or isinstance(warnings, str):
        return warnings or None
    return "; ".join(warnings) or None


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """A typed table of records, one row per input (what ``--parquet`` writes): :data:`COLUMNS`, and
    :data:`VMAF_COLUMNS` when a record has VMAF."""
    records = list(records)
    columns = record_columns(any("vmaf" in r for r in records))
    table = pd.DataFrame([flat_row(r, columns) for r in records], columns=columns)
    numbers = [c for c in columns if c in ("score", "raw_score", *POOLED) or (c.startswith("vmaf") and c != "vmaf_model")]
    for column in numbers:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    table["frames_scored"] = pd.to_numeric(table["frames_scored"], errors="coerce").astype("Int64")
    table["higher_is_better"] = table["higher_is_better"].astype("boolean")
    for column in set(columns) - set(numbers) - {"frames_scored", "higher_is_better"}:
        table[column] = table[column].astype("string")
    return table


def require_parquet() -> None:
    """Refuse ``--parquet`` before any work when pyarrow (the writer pandas uses) is not installed."""
    require("pyarrow", "--parquet", usage=True)


def write_parquet(records: Iterable[dict], path: str | os.PathLike) -> Path:
    """Write :func:`records_frame` atomically (beside the target, then renamed)."""
    require_parquet()
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    records_frame(records).to_parquet(tmp, index=False, engine="pyarrow")
    tmp.replace(path)
    return path


def check_output(path: str | os.PathLike | None, resume: bool, overwrite: bool,
                 flags: tuple[str, str] = ("--resume", "--overwrite")) -> None:
    """Never lose earlier records: an ``--output`` that already holds records is refused unless ``resume``
    (keep them and score only the inputs not in it) or ``overwrite`` (replace it) says what to do."""
    if resume and overwrite:
        raise UsageError(f"choose {flags[0]} or {flags[1]}, not both")
    if path is None or resume or overwrite:
        return
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        lines = sum(1 for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
        held = lines - (path.suffix.lower() == ".csv")
        raise UsageError(f"{path} already holds {held} record{'s' if held != 1 else ''}: add {flags[0]} to keep them "
                         f"and score only the inputs not in it, or {flags[1]} to replace it")


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

    Resuming a CSV keeps the columns its header has, so a file begun by an older version stays one table;
    a new CSV has :func:`record_columns` (``vmaf``: with the VMAF columns).
    """

    def __init__(self, path: str | os.PathLike, resume: bool, vmaf: bool = False):
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
            self._csv = csv.DictWriter(self._file, columns or record_columns(vmaf), extrasaction="ignore")
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
            self._csv.writerow(flat_row(record, self._csv.fieldnames))
        else:
            self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class FrameLog:
    """``--csv`` per-frame scores, written as inputs finish to ``NAME.partial``, renamed when the run ends.

    ``vmaf`` adds a ``vmaf`` column (runs with a reference). ``keep`` (a resumed run: the inputs already
    recorded) first copies those inputs' rows from the earlier file, so the file ends with every input's rows
    once. A run that scored nothing and kept nothing removes its partial file and leaves any older file alone.
    """

    def __init__(self, path: str | os.PathLike, vmaf: bool = False, keep: set[str] | None = None):
        self.path = Path(path)
        self.partial = Path(f"{path}.partial")
        self.columns = FRAME_COLUMNS + (["vmaf"] if vmaf else [])
        self._file = open(self.partial, "w", newline="", encoding="utf-8")
        self._file.write(",".join(self.columns) + "\n")
        self.rows = 0
        if keep and self.path.is_file():
            self._carry(keep)

    def _carry(self, keep: set[str]) -> None:
        with open(self.path, newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(self._file, self.columns, extrasaction="ignore", lineterminator="\n")
            for row in csv.DictReader(f):
                if row.get("file") in keep:
                    writer.writerow(row)
                    self.rows += 1
        self._file.flush()

    def write(self, name: str, rows: pd.DataFrame) -> None:
        table = rows.assign(file=name).reindex(columns=self.columns)
        table.to_csv(self._file, header=False, index=False, float_format="%.6f", lineterminator="\n")
        self._file.flush()
        self.rows += len(rows)

    def close(self) -> None:
        self._file.close()
        if self.rows:
            self.partial.replace(self.path)
        else:
            self.partial.unlink()
