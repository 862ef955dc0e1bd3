"""One batch runner for every way of scoring many inputs: here, or on a Dask cluster.

    >>> import contrique_video as cv
    >>> outputs = cv.Outputs(output="scores.jsonl", resume=True)
    >>> for outcome in cv.score_many(["a.mp4", "b.mp4"], outputs=outputs):
    ...     print(outcome.file, outcome.error or outcome.result.score)

The runner owns what a batch writes, so an executor (:class:`~contrique_video.runs.local.LocalExecutor`,
:class:`~contrique_video.runs.dask.DaskExecutor`) only turns inputs into :class:`Outcome` s. Every record is
flushed to ``output`` as its input finishes. An ``output`` that already holds records is refused unless
``resume`` (skip the inputs already there and carry their ``frames_csv`` rows, logs and ``parquet`` rows over)
or ``overwrite`` (start it afresh) says what to do. ``frames_csv``, ``log`` and ``parquet`` are completed from
the finished inputs when the run stops early. SIGTERM is raised as
:class:`~contrique_video.runs.inputs.Terminated` (Ctrl-C as ``KeyboardInterrupt``) after those outputs are
closed, so the caller chooses the exit code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from contrique_video.decode.sampler import Sampling
from contrique_video.extras import require
from contrique_video.errors import ContriqueError, InputError, UsageError
from contrique_video.runs.inputs import stop_signals
from contrique_video.runs.records import (FrameLog, Outcome, RecordLog, check_output, read_records, require_parquet,
                                          write_parquet)

if TYPE_CHECKING:
    from contrique_video.api import Scorer
    from contrique_video.runs.settings import ScorerSettings

log = logging.getLogger("contrique_video")


class Executor(Protocol):
    """Scores ``(index, name)`` inputs and yields an :class:`Outcome` for each as it finishes (in any order)."""

    def run(self, inputs: list[tuple[int, str]], *, sampling: Sampling, decoder: str, timeout: float | None,
            progress: bool, display: tuple[int, int] | None = None) -> Iterator[Outcome]: ...


def make_executor(executor: Executor | str | None, scorer: Scorer | ScorerSettings | None) -> Executor:
    """``None``: this process; a string: a Dask cluster (``local`` or a scheduler address or file)."""
    if executor is None:
        from contrique_video.runs.local import LocalExecutor

        return LocalExecutor(scorer)
    if isinstance(executor, str):
        from contrique_video.runs.dask import DaskExecutor
        from contrique_video.runs.settings import ScorerSettings

        if scorer is not None and not isinstance(scorer, ScorerSettings):
            raise TypeError("a Dask executor loads a model on every worker: give ScorerSettings, not a Scorer")
        return DaskExecutor(executor, settings=scorer)
    if scorer is not None:
        raise TypeError("give the model to the executor, not to score_many, when passing an Executor")
    return executor


def score_many(
    inputs: Iterable[str | os.PathLike],
    *,
    scorer: Scorer | ScorerSettings | None = None,
    executor: Executor | str | None = None,
    sampling: Sampling = Sampling(),
    decoder: str = "pyav",
    timeout: float | None = None,
    display: tuple[int, int] | None = None,
    outputs: Outputs | None = None,
    progress: bool = False,
) -> Iterator[Outcome]:
    """Score ``inputs`` and yield an :class:`Outcome` per input as it finishes, its record already on disk.

    ``scorer`` is a :class:`~contrique_video.api.Scorer` or :class:`~contrique_video.runs.settings.ScorerSettings`
    (default: the built-in model);
    ``executor`` is None (this process), ``"local"`` or a Dask scheduler address (a Dask cluster), or an
    :class:`Executor`. ``outputs`` (an :class:`Outputs`) says what is written besides the outcomes: the records
    file, per-frame CSV, Parquet, per-input logs, VMAF against a reference. ``timeout`` gives up on an input after
    that many seconds (a failure). ``display`` (width, height) scores every input scaled to that display size (see
    :meth:`~contrique_video.api.Scorer.score`); without it, inputs of different sizes get one warning that their
    scores are at their own sizes and not comparable. Close the iterator (or exhaust it) to complete the outputs.

    Arguments that cannot work (see :func:`check_run`) raise :class:`~contrique_video.errors.UsageError` here,
    before any input is scored.
    """
    names = [str(p) for p in inputs]
    outputs = outputs or Outputs()
    check_run(outputs, executor, n_inputs=len(names))
    if outputs.log_template:
        from contrique_video.runs.logs import log_format

        outputs = replace(outputs, log_fmt=log_format(outputs.log_template, outputs.log_fmt))
    options = dict(sampling=sampling, decoder=decoder, timeout=timeout, progress=progress, display=display)
    return _run(names, make_executor(executor, scorer), options, outputs)


@dataclass(frozen=True)
class Outputs:
    """What a batch writes besides the outcomes it yields. ``output`` (.jsonl/.ndjson/.csv) gets one record per
    input, failures included; when it already holds records, ``resume`` skips the inputs it holds (and carries
    their ``frames_csv`` rows, logs and ``parquet`` rows over) and ``overwrite`` replaces it. ``frames_csv`` gets
    every scored frame, ``parquet`` every record, ``log_template`` a libvmaf-style log per input (see
    :mod:`contrique_video.runs.logs`, ``log_fmt`` its format), and ``reference`` adds VMAF (libvmaf model
    ``vmaf_model``, run by ``ffmpeg``) against that file."""

    output: str | os.PathLike | None = None
    resume: bool = False
    overwrite: bool = False
    frames_csv: str | os.PathLike | None = None
    parquet: str | os.PathLike | None = None
    log_template: str | None = None
    log_fmt: str | None = None
    reference: str | os.PathLike | None = None
    vmaf_model: str | None = None
    ffmpeg: str | None = None


#: How the checks name the arguments: the Python API's keywords, or the CLI's flags.
API_NAMES = {"resume": "resume=True", "overwrite": "overwrite=True", "output": "output", "ffmpeg": "ffmpeg",
             "log_fmt": "log_fmt", "log": "log_template"}
CLI_NAMES = {"resume": "--resume", "overwrite": "--overwrite", "output": "--output", "ffmpeg": "--ffmpeg",
             "log_fmt": "--log-fmt", "log": "--log FILE"}


def check_run(outputs: Outputs, executor=None, n_inputs: int | None = None, names: dict = API_NAMES) -> None:
    """What :func:`score_many` refuses before any work (the CLI calls it before loading a model, with
    ``names=CLI_NAMES``): resume without an output, an output whose records would be lost, a log template
    that would write several inputs to one file, and outputs whose optional package is not installed, each
    naming the extra to install."""
    o = outputs
    if o.resume and not o.output:
        raise UsageError(f"{names['resume'].split('=')[0]} needs {names['output']} (the file that records finished inputs)")
    check_output(o.output, o.resume, o.overwrite, (names["resume"], names["overwrite"]))
    if o.log_fmt and not o.log_template:
        raise UsageError(f"{names['log_fmt']} needs {names['log']}")
    if o.log_template and n_inputs is not None:
        from contrique_video.runs.logs import check_log_template

        try:
            check_log_template(o.log_template, n_inputs)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if o.parquet:
        require_parquet()
    if isinstance(executor, str):
        require("distributed", "--engine", usage=True)
    if o.reference and not o.ffmpeg:
        require("imageio_ffmpeg", f"--reference without {names['ffmpeg']}", usage=True)


def _run(names: list[str], executor: Executor, options: dict, out: Outputs) -> Iterator[Outcome]:
    """:func:`score_many` once its arguments are checked: the outputs open on the first ``next``."""
    vmaf = bool(out.reference)
    records = RecordLog(out.output, out.resume, vmaf) if out.output else None
    done = records.done if records else set()
    if done:
        log.info("resuming: %d of %d inputs are already in %s", len(set(names) & done), len(names), out.output)
    earlier = read_records(out.output) if out.parquet and done else []
    todo = [(i, name) for i, name in enumerate(names) if name not in done]
    frame_log = FrameLog(out.frames_csv, vmaf, keep=done) if out.frames_csv else None
    finished: list[tuple[int, dict]] = []  # for parquet, in input order at the end
    sizes = SizeCheck(options["display"])
    try:
        with stop_signals() as raise_if_stopped:
            for outcome in executor.run(todo, **options):
                raise_if_stopped()  # a signal PyAV swallowed must not become this input's failure record
                if outcome.result is not None:
                    _finish(outcome, out)  # may turn it into a failure (VMAF, the log)
                if outcome.result is not None:
                    sizes.add(outcome.result)
                    if frame_log:
                        frame_log.write(outcome.file, outcome.result.frames)
                record = outcome.record()
                if records:
                    records.write(record)
                if out.parquet:
                    finished.append((outcome.index, record))
                yield outcome
    finally:
        if frame_log:
            frame_log.close()
        if records:
            records.close()
        if out.parquet and (earlier or finished):
            write_parquet(earlier + [r for _, r in sorted(finished, key=lambda f: f[0])], out.parquet)


class SizeCheck:
    """One warning when inputs of different sizes are scored at their own sizes: the model scores the pixels
    it gets, so a 720p encode at 720p scores higher than at the 1080p it is watched at (use ``display``)."""

    def __init__(self, display: tuple[int, int] | None):
        self.sizes: set[tuple[int, int]] = set()
        self.warned = display is not None

    def add(self, result) -> None:
        if self.warned or result is None or result.width is None:  # a failed input has no result
            return
        self.sizes.add((result.width, result.height))
        if len(self.sizes) > 1:
            self.warned = True
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(self.sizes))
            log.warning("inputs of different sizes (%s) are scored at their own size, so their scores are not "
                        "comparable; pass --display WxH (display=) to score them as watched on one display", shown)


def _finish(outcome: Outcome, out: Outputs) -> None:
    """VMAF and the per-input log of a scored input; an error here makes the input a failure."""
    result = outcome.result
    try:
        if out.reference:
            from contrique_video.encoding.reference import DEFAULT_MODEL, add_vmaf

            add_vmaf(result, out.reference, ffmpeg=out.ffmpeg, model=out.vmaf_model or DEFAULT_MODEL)
            log.info("%s: VMAF %.2f on the scored frames (%.2f on all frames)", outcome.file,
                     result.reference["vmaf"], result.reference["vmaf_all_frames"] or float("nan"))
        if out.log_template:
            from contrique_video.runs.logs import log_path, write_log

            path = log_path(out.log_template, result.file, outcome.index)
            if path.resolve() == Path(result.file).resolve():
                raise InputError(f"output {path} is also an input; refusing to overwrite it")
            fps = result.frames_scored / outcome.seconds if outcome.seconds else None
            write_log(result, path, out.log_fmt, fps)
    except ContriqueError as exc:
        outcome.result, outcome.error = None, str(exc)
