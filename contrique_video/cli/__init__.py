"""The ``contrique-video`` command line: a thin layer over :mod:`contrique_video.api`.

Data goes to stdout, logs and progress bars to stderr. Exit codes: 0 success, 1 an input or model
failed (each failure is one line on stderr), 2 a usage error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pandas as pd
from tqdm import tqdm

from contrique_video import __version__
from contrique_video.backends.base import BACKENDS, PRECISIONS
from contrique_video.decode.sampler import Sampling
from contrique_video.errors import ContriqueError, InputError

log = logging.getLogger("contrique_video")
DEFAULT_MAX_PIXELS = 4096 * 2304  # all 4K formats; larger frames are refused (see --max-pixels)
PLOT_SUFFIXES = (".png", ".pdf", ".svg")  # formats matplotlib writes without extra packages


def fail(message: str) -> None:
    click.echo(f"contrique-video: error: {message}", err=True)


def guarded(fn):
    """Turn input and file-system errors into one line on stderr and exit 1; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ContriqueError as exc:
            fail(str(exc))
            sys.exit(exc.exit_code)
        except OSError as exc:  # e.g. an output folder that does not exist, a full disk
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
            sys.exit(1)
        except KeyboardInterrupt:
            fail("interrupted")
            sys.exit(130)

    return wrapper


class OneLineGroup(click.Group):
    """Usage errors (unknown option, bad value) as one line and exit 2, like every other error here."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            sub = exc.ctx.command_path[len(exc.ctx.find_root().command_path):].strip() if exc.ctx else ""
            hint = f" (see `contrique-video {sub} --help`)" if sub else ""
            fail(f"{exc.format_message()}{hint}")
            sys.exit(2)
        except click.ClickException as exc:
            fail(exc.format_message())
            sys.exit(exc.exit_code)
        except click.Abort:
            fail("interrupted")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def quiet_option(fn):
    """`-q` after the subcommand too (`score in.mp4 -q`), as users type it."""

    def silence(ctx: click.Context, param, value: bool) -> None:
        if value:
            ctx.find_object(dict)["quiet"] = True
            logging.getLogger("contrique_video").setLevel(logging.WARNING)

    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=silence,
                        help="No progress bars or informational logs on stderr.")(fn)


def sampling_options(verb: str):
    """Sampling flags shared by ``score`` and ``features`` (``verb`` says what is done to the frames chosen);
    at most one selection mode. Values are checked while parsing, before any model loads."""
    options = [
        click.option("--all", "all_frames", is_flag=True, help=f"{verb} every frame."),
        click.option("--fps", type=click.FloatRange(min=0, min_open=True), help=f"{verb} F frames per second of video time."),
        click.option("--frames", type=click.IntRange(1),
                     help=f"{verb} N frames spread uniformly over the time range (default 64)."),
        click.option("--every", type=click.IntRange(1), help=f"{verb} every K-th frame."),
        click.option("--keyframes", is_flag=True, help=f"{verb} key frames only (fast: other frames are not decoded)."),
        click.option("--start", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Start time in seconds."),
        click.option("--duration", type=click.FloatRange(min=0, min_open=True),
                     help="Length of the time range in seconds (default: to the end)."),
        click.option("--decoder", type=click.Choice(["pyav", "decord"]), default="pyav", show_default=True,
                     help="Frame decoder: pyav (FFmpeg; keeps 10-bit depth) or decord (if installed; decodes to 8-bit)."),
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def output_file(*suffixes: str):
    """A callback for output-file options: the folder must exist and, given ``suffixes``, the name must end
    in one of them. Checked while parsing, so a typo fails at once (exit 2), not after all the scoring."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return value
        path = Path(value)
        if suffixes and path.suffix.lower() not in suffixes:
            raise click.BadParameter(f"{value}: use a {', '.join(suffixes)} file name")
        if not path.parent.is_dir():
            raise click.BadParameter(f"{value}: the folder {path.parent} does not exist")
        return value

    return check


def output_dir_option(help: str):
    """``-o/--output DIR``, as every other command names its output, plus the old ``--out`` as a hidden
    alias that still works (with one deprecation warning) so existing scripts keep running."""

    def decorate(fn):
        fn = click.option("--out", "out_alias", hidden=True, type=click.Path(file_okay=False),
                          help="Deprecated alias of -o/--output.")(fn)
        return click.option("--output", "-o", "outdir", type=click.Path(file_okay=False),
                            help=f"{help}  [required]")(fn)

    return decorate


def pick_output_dir(outdir: str | None, out_alias: str | None) -> str:
    """The folder from ``-o/--output`` or the deprecated ``--out``; a usage error when neither or both."""
    if out_alias is not None:
        log.warning("--out is deprecated; use -o/--output")
        if outdir is not None:
            raise click.UsageError("give -o/--output once (--out is its old name)")
        return out_alias
    if outdir is None:
        raise click.UsageError("Missing option '-o' / '--output'.")
    return outdir


def make_sampling(all_frames, fps, frames, every, keyframes, start, duration) -> Sampling:
    chosen = [name for name, v in (("--all", all_frames), ("--fps", fps), ("--frames", frames),
                                   ("--every", every), ("--keyframes", keyframes)) if v]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one sampling mode, not {' and '.join(chosen)}")
    if all_frames:
        return Sampling("all", None, start, duration)
    if fps is not None:
        return Sampling("fps", fps, start, duration)
    if every is not None:
        return Sampling("every", every, start, duration)
    if keyframes:
        return Sampling("keyframes", None, start, duration)
    return Sampling("frames", frames if frames is not None else Sampling().value, start, duration)


def model_options(fn):
    options = [
        click.option("--weights", type=click.Path(dir_okay=False), help="CONTRIQUE checkpoint (default: the built-in model)."),
        click.option("--batch-size", type=click.IntRange(1, 256), default=4, show_default=True, help="Frames per forward pass."),
        click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for inference (default: all cores)."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                     help="Run the encoder on the CPU or the first CUDA GPU."),
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     envvar="CONTRIQUE_VIDEO_BACKEND",
                     help="Encoder path; auto picks the fastest that keeps fp32 scores and says which on stderr."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                     help="Compute precision where the backend supports it (int8: onnxruntime on CPU)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="contrique-video")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or informational logs on stderr.")
@click.pass_context
def main(ctx: click.Context, quiet: bool) -> None:
    """No-reference video quality scores from CONTRIQUE features."""
    ctx.obj = {"quiet": quiet}
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="contrique-video: %(message)s",
                        stream=sys.stderr)


def shorten(text: str, width: int, keep_end: bool = True) -> str:
    """``text`` cut to ``width`` characters with an ellipsis where it was cut, so a cut is never silent."""
    if len(text) <= width:
        return text
    return "\u2026" + text[-(width - 1):] if keep_end else text[:width - 1] + "\u2026"


def progress_bar(ctx: click.Context, desc: str, total: int | None, unit: str = "frame") -> tqdm:
    """A bar on stderr (none with -q); it disappears when done, leaving stderr to the log lines."""
    return tqdm(desc=desc, total=total, unit=unit, disable=ctx.obj["quiet"], file=sys.stderr, dynamic_ncols=True,
                leave=False)


@contextlib.contextmanager
def logs_above_bars() -> Iterator[None]:
    """While progress bars run, log lines go through ``tqdm.write`` (above the bar) rather than being glued
    to the bar's line. Only the console handler ``main`` installs is redirected; handlers that others set up
    (a log file, a test's capture) are left alone."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    if any(type(h) is logging.StreamHandler and h.stream in (sys.stdout, sys.stderr) for h in logging.root.handlers):
        with logging_redirect_tqdm():
            yield
    else:
        yield


@main.command()
@quiet_option
@click.argument("inputs", nargs=-1)
@click.option("--head", help="Head name (see `info`) or a head JSON file (default: the built-in model's head).")
@sampling_options("Score")
@model_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="stdout format: a table, one JSON object per input per line, or CSV with a header.")
@click.option("--csv", "frames_csv", type=click.Path(dir_okay=False), callback=output_file(), help="Write per-frame scores (file,frame,pts_time,score) here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), callback=output_file(*PLOT_SUFFIXES),
              help="Write a PNG (or .pdf, .svg) of per-frame scores over time, with the pooled score and the worst segments marked.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), callback=output_file(".jsonl", ".ndjson", ".csv"),
              help="Also append one record per input (.jsonl/.ndjson or .csv), failures included, synced to disk as each finishes.")
@click.option("--resume", is_flag=True, help="Skip inputs already recorded in --output.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Give up on an input after this many seconds.")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse frames larger than this (the default admits 4096x2304, so all 4K).")
@click.option("--engine", metavar="ADDRESS|local",
              help="Score on a Dask cluster: its scheduler (tcp://HOST:8786 or a scheduler .json file), or `local` "
                   "for worker processes here. Same records as a local run.")
@click.option("--workers", "engine_workers", type=click.IntRange(1, 1024), help="Worker processes for --engine local (default: one per core).")
@click.option("--manifest", type=click.Path(dir_okay=False), help="CSV or Parquet list of inputs (a `file` or `path` column), added to INPUT...")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False), callback=output_file(),
              help="Also write every record (with --resume, the earlier ones too) as one Parquet table at the end.")
@click.option("--log", "log_template", type=click.Path(dir_okay=False), callback=output_file(),
              help="Write a libvmaf-style log per input (frames with frameNum, pts_time, contrique; pooled_metrics). "
                   "With several inputs put {stem}, {name} or {index} in the name, e.g. --log 'logs/{stem}.json'.")
@click.option("--log-fmt", "log_fmt", type=click.Choice(["json", "csv", "xml"]),
              help="Format of --log, as libvmaf's --log_fmt (default: from the file's extension, else json).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), callback=output_file(),
              help="Write a PNG showing what the score saw: per input, the frame curve with the pooled score and "
                   "its quality band, and thumbnails of the worst and best frames with their times and scores. One "
                   "page for a batch, or one image per input with {stem}, {name} or {index} in the name.")
@click.option("--reference", "reference", type=click.Path(dir_okay=False),
              help="Also compute VMAF (libvmaf, full reference) of each input against this file; per-frame `vmaf` "
                   "at the scored frames and pooled values go into the records and logs.")
@click.option("--vmaf-model", default="vmaf_v0.6.1", show_default=True, help="libvmaf model version for --reference.")
@click.option("--ffmpeg", "vmaf_ffmpeg", type=click.Path(dir_okay=False),
              help="ffmpeg with libvmaf for --reference (default: imageio-ffmpeg's static build).")
@click.option("--compare", "compare_path", type=click.Path(dir_okay=False), callback=output_file(),
              help="With --reference: a PNG of our score beside VMAF (curves, scatter, and a table of the frames "
                   "where they disagree most), and the same table for every frame as CSV beside it.")
@click.pass_context
@guarded
def score(ctx, inputs, head, all_frames, fps, frames, every, keyframes, start, duration, decoder, weights, batch_size,
          threads, device, backend, precision, fmt, frames_csv, plot_path, output, resume, timeout, max_pixels,
          engine, engine_workers, manifest, parquet_path, log_template=None, log_fmt=None, report_path=None,
          reference=None, vmaf_model="vmaf_v0.6.1", vmaf_ffmpeg=None, compare_path=None):
    """Score videos or images: files, directories, globs, or `-` for a stream on stdin.

    Exit code 0 when every input was scored, 1 when some failed (each failure is one line on stderr and a
    record in --output), 2 for usage errors, 130 on Ctrl-C and 143 on SIGTERM (finished results are kept).
    """
    from contrique_video.api import Scorer
    from contrique_video.runs.dask import read_manifest, read_records, write_parquet
    from contrique_video.runs.inputs import (
        Terminated,
        expand_inputs,
        sigterm_as_exception,
        time_limit,
    )
    from contrique_video.runs.records import FrameLog, RecordLog

    if resume and not output:
        raise click.UsageError("--resume needs --output (the file that records finished inputs)")
    sampling = make_sampling(all_frames, fps, frames, every, keyframes, start, duration)
    if not inputs and not manifest:
        raise click.UsageError("Missing argument 'INPUTS...' (or --manifest FILE)")
    names = expand_inputs(list(inputs))
    if manifest:
        names = list(dict.fromkeys(names + read_manifest(manifest)))
    guard_outputs([*names, weights, head, manifest], frames_csv, plot_path, output, parquet_path, report_path)
    logs = LogPlan(log_template, log_fmt, names)
    if engine and (log_template or report_path or reference):
        raise click.UsageError("--log, --report and --reference run locally; drop --engine (or use --csv, --plot)")
    if (vmaf_ffmpeg or ctx.get_parameter_source("vmaf_model") is not click.core.ParameterSource.DEFAULT) and not reference:
        raise click.UsageError("--ffmpeg and --vmaf-model are for --reference REF")
    if compare_path and not reference:
        raise click.UsageError("--compare needs --reference REF (it sets our score beside VMAF)")
    if compare_path:
        guard_outputs([*names, reference], compare_path, str(Path(compare_path).with_suffix(".csv")))
    if reference:
        if "-" in names:
            raise click.UsageError("`-` (stdin) cannot be compared with --reference; give files")
        guard_outputs([reference], frames_csv, plot_path, output, parquet_path, report_path)
        from contrique_video.encoding.reference import vmaf_ffmpeg as find_ffmpeg

        find_ffmpeg(vmaf_ffmpeg)  # fail before scoring when there is no ffmpeg to run libvmaf
    if engine:
        sys.exit(score_on_engine(ctx, names, engine, engine_workers, sampling, decoder, fmt, frames_csv, plot_path,
                                 output, resume, timeout, parquet_path,
                                 dict(weights=weights, head=head, device=device, backend=backend, precision=precision,
                                      batch_size=batch_size, threads=threads, max_pixels=max_pixels)))
    scorer = Scorer(weights=weights, head=head, device=device, backend=backend, precision=precision,
                    batch_size=batch_size, threads=threads,
                    max_pixels=max_pixels)
    h = scorer.check_head()
    log.info("model %s, head %s (%s, %s), sampling: %s", scorer.model_id, h.name, h.scale,
             "higher is better" if h.higher_is_better else "lower is better", sampling.describe())
    records = RecordLog(output, resume) if output else None
    if records and records.done:
        log.info("resuming: %d of %d inputs are already in %s", len(set(names) & records.done), len(names), output)
        names = [n for n in names if n not in records.done]
    frame_log = FrameLog(frames_csv) if frames_csv else None
    table = ScoreTable(h.range) if fmt == "table" else None
    results, failures, stopped = [], 0, None
    finished: list[dict] = []  # for --parquet, after the records of earlier runs
    earlier = read_records(output) if parquet_path and records and records.done else []
    try:
        with sigterm_as_exception(), logs_above_bars():
            for i, name in enumerate(names, 1):
                bars: list[tqdm] = []  # created once the input is open and its frame count known
                desc = f"[{i}/{len(names)}] {shorten(Path(name).name, 30, keep_end=False)}"

                def on_open(total: int | None, desc=desc, bars=bars) -> None:
                    bars.append(progress_bar(ctx, desc, total))

                def on_frames(rows: pd.DataFrame, name=name, bars=bars) -> None:
                    bars[0].update(len(rows))
                    if frame_log:
                        frame_log.write(name, rows)

                try:
                    began = time.perf_counter()
                    with time_limit(timeout):
                        result = scorer.score(name, sampling=sampling, decoder=decoder, on_frames=on_frames,
                                              on_open=on_open)
                    elapsed = time.perf_counter() - began
                    if reference:
                        from contrique_video.encoding.reference import add_vmaf

                        add_vmaf(result, reference, ffmpeg=vmaf_ffmpeg, model=vmaf_model)
                        log.info("%s: VMAF %.2f on the scored frames (%.2f on all frames)", name,
                                 result.reference["vmaf"], result.reference["vmaf_all_frames"] or float("nan"))
                    logs.write(result, len(results), elapsed)
                except ContriqueError as exc:
                    result, error = None, str(exc)
                finally:  # the bar goes before anything is printed, so no line is glued to it
                    for bar in bars:
                        bar.close()
                if result is None:
                    failures += 1
                    record = {"file": name, "error": error}
                    fail(error)
                else:
                    results.append(result)
                    record = result.record()
                    emit(result, fmt, first=len(results) == 1, table=table)
                if records:
                    records.write(record)
                if parquet_path:
                    finished.append(record)
    except Terminated:
        stopped = 143
    except KeyboardInterrupt:
        stopped = 130
    finally:
        if frame_log:
            frame_log.close(keep=frame_log.rows > 0)
        if records:
            records.close()
        if parquet_path and (finished or earlier):
            write_parquet(earlier + finished, parquet_path)
    finish_score(results, table, plot_path, report_path, compare_path)
    if stopped:
        fail(f"{'terminated' if stopped == 143 else 'interrupted'}: the {len(results)} inputs scored before it are kept")
        sys.exit(stopped)
    sys.exit(1 if failures else 0)


def finish_score(results: list, table: "ScoreTable | None", plot_path: str | None, report_path: str | None = None,
                 compare_path: str | None = None) -> None:
    """The table's legend, --plot, --report and --compare of the inputs scored, also after Ctrl-C or SIGTERM."""
    if table is not None:
        table.footer()
    if plot_path and results:
        from contrique_video.runs.plot import plot_frames

        plot_frames(results, plot_path)
    if report_path and results:
        from contrique_video.runs.report import write_reports

        log.info("wrote %s", ", ".join(map(str, write_reports(results, report_path))))
    if compare_path and results:
        from contrique_video.runs.report import write_compare

        log.info("wrote %s and %s", *write_compare(results, compare_path))


class LogPlan:
    """``score --log``: where each input's libvmaf-style log goes, checked before anything is scored."""

    def __init__(self, template: str | None, fmt: str | None, names: list[str]):
        from contrique_video.runs.logs import log_format

        if fmt and not template:
            raise click.UsageError("--log-fmt needs --log FILE")
        self.template, self.fmt = template, log_format(template, fmt) if template else None
        if template and len(names) > 1 and not any(k in template for k in ("{stem}", "{name}", "{index}")):
            raise click.UsageError("--log with several inputs needs {stem}, {name} or {index} in the file name, "
                                   "e.g. --log 'logs/{stem}.json'")
        if template:
            try:
                template.format(stem="", name="", index=0)
            except (KeyError, IndexError, ValueError):
                raise click.BadParameter("only {stem}, {name} and {index} may be filled in", param_hint="--log") from None

    def write(self, result, index: int, seconds: float | None = None) -> None:
        if not self.template:
            return
        from contrique_video.runs.logs import log_path, write_log

        path = log_path(self.template, result.file, index)
        if path.resolve() == Path(result.file).resolve():
            raise InputError(f"output {path} is also an input; refusing to overwrite it")
        fps = result.frames_scored / seconds if seconds else None
        write_log(result, path, self.fmt, fps)


def score_on_engine(ctx, names, engine, workers, sampling, decoder, fmt, frames_csv, plot_path, output, resume, timeout,
                    parquet_path, scorer_options: dict) -> int:
    """``score --engine``: each input is a task on a Dask cluster; stdout, --output and exit codes as locally."""
    from click.core import ParameterSource

    from contrique_video.runs.dask import run_on_engine

    if "-" in names:
        raise click.UsageError("`-` (stdin) cannot be scored with --engine; give files")
    if ctx.get_parameter_source("device") is ParameterSource.DEFAULT:
        scorer_options["device"] = "auto"  # each worker uses its GPU if it has one
    with logs_above_bars():
        code, results = run_on_engine(names, engine, workers=workers, sampling=sampling, decoder=decoder,
                                      scorer_options=scorer_options, timeout=timeout, output=output, resume=resume,
                                      frames_csv=frames_csv, parquet=parquet_path,
                                      keep_results=fmt == "table" or bool(plot_path),
                                      emit=lambda result, first: emit(result, fmt, first), fail=fail,
                                      progress=not ctx.obj["quiet"])
    table = None
    if fmt == "table":  # in input order, once all are in (workers finish out of order)
        known = known_head(scorer_options["head"], scorer_options["weights"])
        table = ScoreTable(known.range if known else None)
        for result in results:
            table.row(result)
    finish_score(results, table, plot_path)
    return code


def guard_outputs(inputs, *outputs) -> None:
    """Never overwrite an input (media, weights, head, table) with an output."""
    ins = {Path(i).resolve() for i in inputs if i and i != "-"}
    for out in outputs:
        if out and Path(out).resolve() in ins:
            raise InputError(f"output {out} is also an input; refusing to overwrite it")


def emit(result, fmt: str, first: bool, table: "ScoreTable | None" = None) -> None:
    """Print one input's result as soon as it is done, so an interrupted run keeps what it printed."""
    if table is not None:
        table.row(result)
    elif fmt == "json":
        click.echo(json.dumps(result.record()))
    elif fmt == "csv":
        from contrique_video.runs.records import SUMMARY_COLUMNS, summary_row

        row = pd.DataFrame([summary_row(result.record())], columns=SUMMARY_COLUMNS)
        click.echo(row.to_csv(index=False, header=first, float_format="%.4f"), nl=False)
    sys.stdout.flush()


BANDS = ((20.0, "bad"), (40.0, "poor"), (60.0, "fair"), (80.0, "good"), (math.inf, "excellent"))
BAND_LEGEND = "band: <20 bad, 20-40 poor, 40-60 fair, 60-80 good, >=80 excellent"


def band(score: float) -> str:
    """The README's quality band (CLIVE's slider words at equal steps) of a score on a 0-100 MOS scale."""
    return next(word for upper, word in BANDS if score < upper)


class ScoreTable:
    """``score --format table`` on stdout: the header with the first row, each row as its input finishes
    (so Ctrl-C keeps the rows printed), and a legend of the scale and columns after the last row.

    Bands are given for heads on a 0-100 scale where higher is better (the built-in head's); ``-`` otherwise.
    """

    FILE_WIDTH = 40

    def __init__(self, head_range: tuple[float, float] | None):
        self.range = tuple(head_range) if head_range is not None else None
        self.first = None

    def row(self, r) -> None:
        if self.first is None:
            self.first = r
            click.echo(f"{'file':<{self.FILE_WIDTH}} {'score':>7} {'band':<9} {'p5':>7} {'min':>7} {'frames':>6}")
        word = band(r.score) if self.bands(r) else "-"
        click.echo(f"{shorten(r.file, self.FILE_WIDTH):<{self.FILE_WIDTH}} {r.score:7.2f} {word:<9} "
                   f"{r.pooled['p5']:7.2f} {r.pooled['min']:7.2f} {r.frames_scored:6d}")
        sys.stdout.flush()

    def bands(self, r) -> bool:
        return r.higher_is_better and self.range == (0, 100)

    def footer(self) -> None:
        r = self.first
        if r is None:
            return
        direction = "higher is better" if r.higher_is_better else "lower is better"
        scale = f"{r.scale} on {self.range[0]:g}-{self.range[1]:g}" if self.range else r.scale
        worst = "the worst frame" if r.higher_is_better else "the best frame"
        click.echo(f"score: predicted {scale} ({direction}) by head '{r.head}', the mean over frames; model {r.model}")
        click.echo(f"p5: 5th percentile of the frame scores; min: lowest frame score ({worst})"
                   + (f"; {BAND_LEGEND}" if self.bands(r) else ""))
        sys.stdout.flush()


@main.command()
@quiet_option
@click.argument("input_path", metavar="INPUT")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              callback=output_file(".npy", ".npz", ".parquet"), help=".npy (float32 [frames, D]), .npz or .parquet (with frame and pts_time).")
@sampling_options("Extract features of")
@model_options
@click.pass_context
@guarded
def features(ctx, input_path, output, all_frames, fps, frames, every, keyframes, start, duration, decoder, weights,
             batch_size, threads, device, backend, precision):
    """Write per-frame CONTRIQUE features ([full-scale | half-scale])."""
    from contrique_video.api import Scorer

    guard_outputs([input_path, weights], output)
    sampling = make_sampling(all_frames, fps, frames, every, keyframes, start, duration)
    scorer = Scorer(weights=weights, head=None, device=device, backend=backend, precision=precision,
                    batch_size=batch_size, threads=threads)
    result = scorer.features(input_path, sampling=sampling, decoder=decoder)
    write_features(result, Path(output))
    log.info("wrote %d x %d features to %s", *result.features.shape, output)


def write_features(result, path: Path) -> None:
    """Atomic: written beside the target, then renamed, so a failure never leaves a half file."""
    tmp = path.with_name(path.name + ".partial")
    suffix = path.suffix.lower()
    with open(tmp, "wb") as f:
        if suffix == ".npy":
            np.save(f, result.features.astype(np.float32))
        elif suffix == ".npz":
            np.savez(f, features=result.features.astype(np.float32), frame=result.frame, pts_time=result.pts_time)
        else:
            table = pd.DataFrame({"frame": result.frame, "pts_time": result.pts_time})
            table["features"] = list(result.features.astype(np.float32))
            try:
                table.to_parquet(f, index=False)
            except ImportError:
                tmp.unlink(missing_ok=True)
                raise InputError("parquet output needs pyarrow: pip install 'contrique-video[parquet]'") from None
    tmp.replace(path)


@main.command("import-head")
@quiet_option
@click.argument("pickle_file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), callback=output_file(),
              help="Head JSON to write.")
@click.option("--name", help="Head name (default: from the file name).")
@guarded
def import_head(pickle_file, output, name):
    """Convert an official CONTRIQUE sklearn Ridge (.save) into a plain JSON head, without unpickling code."""
    from contrique_video.training.ridge_import import import_ridge

    guard_outputs([pickle_file], output)
    head = import_ridge(pickle_file, name=name)
    head.save(output)
    click.echo(f"{output}: head {head.name!r}, {head.dim} weights, intercept {head.intercept:.6f}, "
               f"{head.scale} {'higher' if head.higher_is_better else 'lower'} is better")


def available_backends() -> str:
    """Backends with the precisions this machine runs them at, for `info`."""
    import importlib.util

    import torch

    from contrique_video.backends.base import torch_precisions

    parts = [f"torch/torch-compile ({', '.join(torch_precisions('cpu'))} on CPU"
             + (f"; {', '.join(torch_precisions('cuda'))} on CUDA)" if torch.cuda.is_available() else ")")]
    if importlib.util.find_spec("onnxruntime"):
        parts.append("onnxruntime (fp32, int8 on CPU)")
    parts.append("tensorrt" if importlib.util.find_spec("tensorrt") else "tensorrt not installed")
    return "; ".join(parts)


@main.command("export-onnx")
@quiet_option
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint to export (default: the built-in model).")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="fp32: the encoder as it is; int8: quantised with calibration (--calibrate or --table).")
@click.option("--calibrate", multiple=True, type=click.Path(),
              help="int8: media whose frames (32 per video, both scales) set the activation ranges; repeatable.")
@click.option("--table", type=click.Path(dir_okay=False),
              help="int8: the calibration table to read, or to write when --calibrate is given "
                   "(default: the built-in model's, or the cache's).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), callback=output_file(),
              help="ONNX file to write.")
@guarded
def export_onnx(weights, precision, calibrate, table, output):
    """Export the encoder (one scale, dynamic batch/height/width) to ONNX, optionally int8-quantised."""
    from contrique_video.api import builtin_weights
    from contrique_video.backends.onnx import calibration_table, quantize_int8
    from contrique_video.backends.onnx import export_onnx as export
    from contrique_video.decode import open_source
    from contrique_video.models.card import load_model as load_weights
    from contrique_video.models.card import model_digest

    path = Path(weights) if weights else builtin_weights()
    guard_outputs([path, table], output)
    digest = model_digest(path)
    if precision == "fp32":
        if calibrate or table:
            raise click.UsageError("--calibrate and --table are for --precision int8")
        export(load_weights(path), output, source=digest)
    else:
        table_path = Path(table) if table else calibration_table(digest)
        frames = []
        for media in calibrate:
            with open_source(media) as src:
                frames += [f.rgb for f in src.frames(Sampling())]
        if calibrate:
            table_path.parent.mkdir(parents=True, exist_ok=True)
            table_path.unlink(missing_ok=True)  # computed anew from these frames
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export(load_weights(path), Path(tmp) / "fp32.onnx", source=digest)
            quantize_int8(fp32, output, table_path, frames)
    click.echo(f"{output}: {precision} ONNX of {path.name} (sha256 {digest}...)")


@main.command()
@quiet_option
@click.option("--candidates", default=None,
              help="BACKEND:PRECISION,... to time against the official eager fp32 path; the first is the one "
                   "checked on CLIVE and for memory (default: auto's choice, then every other CPU path).")
@click.option("--frames", type=click.IntRange(1), default=3, show_default=True, help="1080p frames timed per candidate.")
@click.option("--repeats", type=click.IntRange(1), default=2, show_default=True,
              help="Timed runs per candidate; the fastest counts.")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for inference (default: all cores).")
@click.option("--clive", type=click.Path(file_okay=False), help="CLIVE folder (mos.csv, images/): SRCC change per candidate.")
@click.option("--clive-limit", type=click.IntRange(1), help="Only the first N CLIVE images.")
@click.option("--speed/--no-speed", default=True, show_default=True, help="Time the candidates on 1080p frames.")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Peak memory for 10 s vs 60 s clips and a 4K frame, with the first candidate.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), callback=output_file(),
              help="Also write the full results as JSON.")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Checkpoint or model card to time (default: the built-in model); --clive and memory use the built-in one.")
@guarded
def bench(candidates, frames, repeats, threads, clive, clive_limit, speed, memory, output, weights):
    """Seconds per 1080p frame, speed-up over eager fp32, share of peak, feature error; prints a markdown table."""
    from contrique_video.api import builtin_weights
    from contrique_video.backends import bench as benchmark
    from contrique_video.backends.autotune import cpu_summary
    from contrique_video.backends.base import auto_choice, cpu_has_bf16

    path = Path(weights) if weights else builtin_weights()
    if candidates:
        pairs = [tuple(c.split(":", 1)) for c in candidates.split(",")]
        if any(len(p) != 2 or p[0] not in BACKENDS or p[1] not in PRECISIONS for p in pairs):
            raise click.BadParameter(f"give BACKEND:PRECISION pairs, e.g. torch-compile:fp32 (backends: "
                                     f"{', '.join(BACKENDS)}; precisions: {', '.join(PRECISIONS)})",
                                     param_hint="--candidates")
    else:
        pairs = [auto_choice("cpu", path, threads), ("torch-compile", "fp32"), ("torch", "fp32"), ("onnxruntime", "fp32"),
                 ("onnxruntime", "int8")]
        if cpu_has_bf16():
            pairs += [("torch", "bf16"), ("torch-compile", "bf16")]
        pairs = list(dict.fromkeys(pairs))
    click.echo(f"CPU: {cpu_summary()}")
    result = benchmark.run(path, pairs, frames=frames, repeats=repeats, threads=threads,
                           clive=Path(clive) if clive else None, clive_limit=clive_limit, memory=memory,
                           speed=speed)
    if speed:
        click.echo(result["table"])
    for name, check in result.get("clive", {}).items():
        click.echo(f"CLIVE ({check['images']} images) {name}: SRCC {check['srcc']:.4f} vs fp32 {check['srcc_fp32']:.4f} "
                   f"(change {check['srcc_change']:+.4f}); scores differ by {check['mean_abs_score_diff']:.3f} on "
                   f"average, {check['max_abs_score_diff']:.3f} at most")
    if "memory" in result:
        m = result["memory"]
        click.echo(f"peak memory: 10 s clip {m['peak_rss_mib_10s']:.0f} MiB, 60 s clip {m['peak_rss_mib_60s']:.0f} MiB "
                   f"({100 * m['growth']:+.1f}%), one 4K frame {m['peak_rss_mib_4k_frame']:.0f} MiB")
    if output:
        Path(output).write_text(json.dumps(result, indent=1))


@main.command()
@quiet_option
@guarded
def info():
    """Versions, decoders, backends, GPU, built-in model and heads."""
    import platform

    import av
    import torch

    from contrique_video.api import builtin_weights
    from contrique_video.backends.autotune import cpu_summary
    from contrique_video.models.head import builtin_heads

    def auto_line(weights) -> str:
        if torch.cuda.is_available() or weights is None:
            from contrique_video.backends.base import auto_choice

            return "{} {}".format(*auto_choice("cuda" if torch.cuda.is_available() else "cpu"))
        from contrique_video.backends.autotune import cached_choice

        choice = cached_choice(weights)  # info measures nothing: the first auto run does, once per machine and model
        if choice is None:
            return "not measured yet for the built-in model on this machine (the first --backend auto run measures it)"
        return f"{choice.backend} {choice.precision} for the built-in model ({choice.reason})"

    def has(module: str) -> str:
        import importlib.util

        return "yes" if importlib.util.find_spec(module) else "no"

    weights = builtin_weights()
    lines = {
        "contrique-video": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyav": f"{av.__version__} (FFmpeg {av.ffmpeg_version_info})",
        "decoders": f"pyav yes, decord {has('decord')}",
        "backends": available_backends(),
        "cpu": cpu_summary(),
        "auto": auto_line(weights),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible to PyTorch",
        "built-in model": str(weights) if weights else "not installed",
        "built-in heads": ", ".join(sorted(builtin_heads())) or "none",
    }
    for k, v in lines.items():
        click.echo(f"{k:16} {v}")


@main.command()
@quiet_option
@output_dir_option("Run folder (checkpoints, logs).")
@click.option("--pristine", required=True, type=click.Path(), help="Folder of pristine photos (synthetic distortions are applied to these).")
@click.option("--authentic", type=click.Path(), help="Folder of authentically distorted images, each its own class.")
@click.option("--mos", type=click.Path(dir_okay=False), help="MOS CSV (image,mos) for the authentic folder: a held-out fold is scored at each checkpoint.")
@click.option("--holdout", type=click.FloatRange(0, 0.9), default=0.3, show_default=True, help="Fraction of the MOS images held out (never trained on).")
@click.option("--objective", type=click.Choice(["contrastive", "classify", "both"]), default="contrastive", show_default=True,
              help="contrastive: the official NT-Xent recipe; classify: cross-entropy over distortion type and level; "
                   "both: the sum of the two.")
@click.option("--arch", type=click.Choice(["resnet18", "resnet34", "resnet50", "efficientnet-lite0", "efficientnet-lite1",
                                           "efficientnet-lite2"]), default="resnet50", show_default=True,
              help="Encoder architecture (resnet50 is CONTRIQUE's; efficientnet-lite* start from ImageNet with --init imagenet).")
@click.option("--crop", type=click.IntRange(64, 1024), default=224, show_default=True,
              help="Side in pixels of the square crops trained on.")
@click.option("--batch", type=click.IntRange(2, 65536), default=64, show_default=True, help="Synthetic images per batch.")
@click.option("--authentic-batch", type=click.IntRange(0, 65536), default=32, show_default=True,
              help="Authentic images per batch (with --authentic).")
@click.option("--crops-per-image", type=click.IntRange(1, 64), default=1, show_default=True,
              help="View pairs cut from each distorted image (cheaper data, less diversity).")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True, help="Optimiser steps in all.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True,
              help="Peak learning rate.")
@click.option("--eval-every", type=click.IntRange(1), default=250, show_default=True,
              help="Steps between checkpoints (and held-out scoring with --mos).")
@click.option("--workers", type=click.IntRange(0, 256), default=2, show_default=True, help="Data-generation processes.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Run the encoder on the CPU or the first CUDA GPU.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Autocast precision (bf16 on GPUs; on this project's CPU bf16 training measured 10x slower).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice (same seed, same batches).")
@click.option("--types", help="Comma-separated distortion types to train on (default: all; see distortions.TYPES).")
@click.option("--init", "init_weights", type=click.Path(dir_okay=False),
              help="Start from these weights (fine-tune) instead of random; 'imagenet' for the Lite ImageNet weights.")
@click.option("--trunk-lr", type=click.FloatRange(0), default=1.0, show_default=True,
              help="The encoder's learning rate as a fraction of --lr (the projector and classifier train at --lr).")
@click.option("--bn", type=click.Choice(["train", "frozen"]), default="train", show_default=True,
              help="frozen: the encoder's BatchNorm statistics stay as initialised (for small batches).")
@click.option("--freeze-stages", type=click.IntRange(0, 7), default=0, show_default=True,
              help="EfficientNet-Lite: keep the stem and this many first stages fixed.")
@click.option("--lite-map", type=click.Choice(["head", "stage7"]), default="head", show_default=True,
              help="EfficientNet-Lite: the map the objectives train; stage7 leaves the head convolution as initialised.")
@click.option("--checkpoint-minutes", type=click.FloatRange(0.1), default=5.0, show_default=True,
              help="Also write OUTPUT/last.pt this often between evaluations.")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for PyTorch (default: all cores).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/last.pt.")
@click.pass_context
@guarded
def train(ctx, outdir, out_alias, pristine, authentic, mos, holdout, objective, arch, crop, batch, authentic_batch, crops_per_image, steps, lr,
          eval_every, workers, device, precision, seed, types, init_weights, trunk_lr, bn, freeze_stages, lite_map,
          checkpoint_minutes, threads, resume):
    """Self-supervised CONTRIQUE training from image folders (see the README's model card)."""
    from contrique_video.training import distortions
    from contrique_video.training.train import TrainConfig
    from contrique_video.training.train import train as run

    out = pick_output_dir(outdir, out_alias)
    chosen = [t.strip() for t in types.split(",")] if types else list(distortions.TYPES)
    if threads:
        import torch

        torch.set_num_threads(threads)

    cfg = TrainConfig(out=out, pristine=pristine, authentic=authentic, mos=mos, holdout=holdout, arch=arch,
                      objective=objective, crop=crop, batch=batch, authentic_batch=authentic_batch,
                      crops_per_image=crops_per_image, steps=steps, lr=lr,
                      eval_every=eval_every, workers=workers, device=device, precision=precision, seed=seed,
                      init=init_weights, types=chosen, trunk_lr=trunk_lr, bn=bn, freeze_stages=freeze_stages,
                      lite_map=lite_map, checkpoint_minutes=checkpoint_minutes)
    result = run(cfg, resume=resume, progress=not ctx.obj["quiet"])
    click.echo(json.dumps({"steps": result["steps"], "best_srcc": result["best_srcc"], "out": out}))


def mos_table(mos: str, heldout: float | None):
    from contrique_video.training.fit import read_mos
    from contrique_video.training.train import holdout_split

    table = read_mos(mos)
    if heldout:
        held = set(holdout_split(list(table["image"]), heldout)[1])
        table = table[table["image"].isin(held)].reset_index(drop=True)
    return table


def extractor(weights: str | None, random_init: str | None, baseline: str | None, threads: int | None):
    """(per-input feature function, cache key, feature blocks) for a model, an untrained encoder or a baseline.

    An input's feature is the mean over its sampled frames (default sampling), as in ``score``.
    """
    from contrique_video.api import Scorer
    from contrique_video.backends.base import TorchBackend
    from contrique_video.decode import open_source
    from contrique_video.models.contrique import Contrique
    from contrique_video.models.nss import NUM_FEATURES, nss_features
    from contrique_video.training.fit import Block, laplacian_variance

    if baseline == "laplacian":
        per_frame, key, blocks = (lambda fs: np.array([[laplacian_variance(f)] for f in fs])), "laplacian", [Block("laplacian", 1, True)]
    elif baseline == "nss":
        per_frame, key, blocks = (lambda fs: np.stack([nss_features(f) for f in fs])), "nss", [Block("nss", NUM_FEATURES, True)]
    elif random_init:
        import torch

        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        backend = TorchBackend(Contrique(random_init))
        per_frame, key, blocks = backend, f"random-{random_init}-seed0", [Block("contrique", backend.feature_dim)]
    else:
        scorer = Scorer(weights=weights, head=None, precision="fp32", threads=threads)  # heads are fit on fp32 features
        per_frame, key, blocks = scorer.frame_features, scorer.model_id, scorer.blocks

    def feature(path) -> np.ndarray:
        with open_source(path) as src:
            return np.mean([per_frame([f.rgb])[0] for f in src.frames(Sampling())], axis=0)

    return feature, key, blocks


@main.command()
@quiet_option
@click.argument("media", type=click.Path())
@click.option("--mos", required=True, type=click.Path(dir_okay=False), help="CSV with columns image,mos.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), callback=output_file(),
              help="Head JSON to write.")
@click.option("--name", help="Head name (default: the output file's stem).")
@click.option("--trained-on", help="Dataset description stored in the head (default: the MOS file and count).")
@click.option("--scale", default="MOS", show_default=True, help="Name of the MOS scale, stored in the head.")
@click.option("--range", "score_range", default="0,100", show_default=True, help="LO,HI of the MOS scale.")
@click.option("--lower-is-better", is_flag=True, help="The scale is a DMOS (lower is better).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Model to fit on (default: the built-in model).")
@click.option("--cache", type=click.Path(dir_okay=False), help="Features cache (.npz), reused when it matches.")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for inference (default: all cores).")
@click.pass_context
@guarded
def fit(ctx, media, mos, output, name, trained_on, scale, score_range, lower_is_better, weights, cache, threads):
    """Fit a Ridge head (alpha by cross-validation) on a folder of media with MOS."""
    from contrique_video.models.head import LinearHead
    from contrique_video.training.fit import (
        evaluate,
        fit_linear,
        match_files,
        media_features,
    )

    try:
        lo, hi = (float(v) for v in score_range.split(","))
    except ValueError:
        raise click.BadParameter("give LO,HI, e.g. 0,100", param_hint="--range") from None
    table = mos_table(mos, None)
    paths = match_files(table, media)
    extract, key, blocks = extractor(weights, None, None, threads)
    X = media_features(extract, paths, cache, key, progress=not ctx.obj["quiet"])
    y = table["mos"].to_numpy()
    model = fit_linear(X, y, blocks)
    cv = evaluate(X, y, blocks=blocks)
    head = LinearHead(weights=model.weights, intercept=model.intercept, name=name or Path(output).stem,
                      features=key, trained_on=trained_on or f"{Path(mos).name}, {len(y)} items", scale=scale,
                      range=(lo, hi), higher_is_better=not lower_is_better,
                      extra={"alpha": model.alphas, "n": int(len(y)),
                             "cv_10x80_20": {k: cv[k] for k in ("srcc", "plcc", "krcc", "rmse")}})
    guard_outputs([mos, weights], output)
    head.save(output)
    click.echo(json.dumps({"head": output, "alpha": head.extra["alpha"], **head.extra["cv_10x80_20"]}))


@main.command()
@quiet_option
@click.argument("media", type=click.Path())
@click.option("--mos", required=True, type=click.Path(dir_okay=False), help="CSV with columns image,mos.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Model to evaluate (default: the built-in model).")
@click.option("--random-init", type=click.Choice(["resnet18", "resnet34", "resnet50"]),
              help="Evaluate an untrained encoder of this architecture instead (a baseline).")
@click.option("--baseline", type=click.Choice(["laplacian", "nss"]),
              help="Evaluate a classical baseline instead: Laplacian variance, or the 36 NSS (BRISQUE-style) features.")
@click.option("--heldout", type=click.FloatRange(0, 0.9), help="Only the images `train --holdout F` held out.")
@click.option("--splits", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Random 80/20 train/test splits; the medians are reported.")
@click.option("--cache", type=click.Path(dir_okay=False), help="Features cache (.npz), reused when it matches.")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for inference (default: all cores).")
@click.pass_context
@guarded
def evaluate(ctx, media, mos, weights, random_init, baseline, heldout, splits, cache, threads):
    """The paper's protocol: random 80/20 splits, median SRCC, PLCC, KRCC, RMSE of a Ridge head."""
    from contrique_video.training.fit import evaluate as run
    from contrique_video.training.fit import match_files, media_features

    if sum(bool(v) for v in (weights, random_init, baseline)) > 1:
        raise click.UsageError("choose one of --weights, --random-init, --baseline")
    table = mos_table(mos, heldout)
    paths = match_files(table, media)
    extract, key, blocks = extractor(weights, random_init, baseline, threads)
    X = media_features(extract, paths, cache, key, progress=not ctx.obj["quiet"])
    res = run(X, table["mos"].to_numpy(), splits=splits, blocks=blocks)
    click.echo(json.dumps({"features": key, **res}))


# ============================================================================ encoding: crf-search, ladder
# Thin layers over crf_search.py and ladder.py (issue #5). Encoders: PyAV's FFmpeg, or --ffmpeg PATH.


def encoder_options(fn):
    """Encoder flags shared by ``crf-search`` and ``ladder``."""
    from contrique_video.encoding.encode import ENCODERS

    options = [
        click.option("--encoder", type=click.Choice(list(ENCODERS)), default="libx264", show_default=True,
                     help="Encoder under test (an FFmpeg encoder name)."),
        click.option("--preset", help="Encoder preset (cpu-used for libvpx-vp9/libaom-av1; default: the encoder's)."),
        click.option("--ffmpeg", "ffmpeg", type=click.Path(dir_okay=False),
                     help="Encode with this ffmpeg binary instead of PyAV's FFmpeg (e.g. for libaom-av1)."),
        click.option("--head", help="Head name or JSON file (default: the built-in model's head)."),
        click.option("--frames", type=click.IntRange(1), default=8, show_default=True,
                     help="Frames scored per encode (spread uniformly)."),
        click.option("--workdir", type=click.Path(file_okay=False), help="Folder for temporary files (default: system temp)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def crf_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    """``--crf`` parsed while parsing, so a malformed or descending grid is a usage error."""
    from contrique_video.encoding.ladder import parse_crfs

    try:
        return parse_crfs(value)
    except InputError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None


def check_crf_range(encoder: str, option: str, *crfs: int | None) -> None:
    """CRFs outside the encoder's scale are usage errors, found before the model loads."""
    from contrique_video.encoding.encode import ENCODERS

    spec = ENCODERS[encoder]
    for crf in crfs:
        if crf is not None and not spec.crf_min <= crf <= spec.crf_max:
            raise click.BadParameter(f"CRF {crf} is outside {encoder}'s range {spec.crf_min}..{spec.crf_max}",
                                     param_hint=f"'{option}'")


def known_head(head: str | None, weights: str | None):
    """The head read from its JSON alone (no model loaded), or None when it is only known with the model
    (custom weights and no --head: the model then says what is missing)."""
    from contrique_video.api import DEFAULT_HEAD
    from contrique_video.models.head import resolve_head

    if head is None and weights is not None:
        return None
    return resolve_head(head or DEFAULT_HEAD)


def check_target(target: float, head: str | None, weights: str | None):
    """The head (see :func:`known_head`) with ``--target`` checked against its range as a usage error."""
    h = known_head(head, weights)
    if h is None:
        return None
    lo, hi = h.range
    if not lo <= target <= hi:
        raise click.BadParameter(f"{target:g} is outside the range {lo:g}..{hi:g} of head {h.name!r} ({h.scale})",
                                 param_hint="'--target'")
    return h


def open_scorer(head, model: dict):
    """A Scorer from ``model_options`` values, whatever options that decorator carries."""
    from contrique_video.api import Scorer

    scorer = Scorer(head=head, max_pixels=DEFAULT_MAX_PIXELS, **model)
    scorer.check_head()
    return scorer


def encode_settings_options(fn):
    """ab-av1-style encoder arguments for ``crf-search`` (and its ``--encode``)."""
    options = [
        click.option("--enc", "enc", multiple=True, metavar="KEY=VALUE",
                     help="Encoder option passed through (repeatable), e.g. --enc tune=grain --enc x265-params=aq-mode=3."),
        click.option("--pix-format", "pix_format", default="yuv420p", show_default=True,
                     help="Pixel format to encode in, e.g. yuv420p10le for 10-bit."),
        click.option("--vfilter", help="ffmpeg filter chain run before encoding, e.g. 'scale=1280:-2' (the encodes, "
                                       "and so the scores, are of the filtered video)."),
        click.option("--keyint", type=int, help="Key frame interval in frames (ffmpeg's -g; default: the encoder's)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_settings(encoder: str, preset, pix_format, vfilter, keyint, enc, ffmpeg):
    """EncodeSettings from the options; a value the encoder or PyAV refuses is a usage error (exit 2)."""
    from contrique_video.encoding.encode import (
        EncodeSettings,
        check_encoder,
        check_settings,
        parse_enc,
    )

    check_encoder(encoder, ffmpeg)  # an encoder missing here is an input error (exit 1), checked first
    try:
        if keyint is not None and keyint < 1:
            raise InputError(f"--keyint {keyint}: give a positive number of frames")
        settings = EncodeSettings(preset, pix_format, vfilter, keyint, parse_enc(enc))
        check_settings(encoder, settings, ffmpeg)
    except ContriqueError as exc:
        raise click.UsageError(str(exc)) from None
    return settings


@main.command("crf-search")
@quiet_option
@click.argument("input_path", metavar="INPUT")
@click.option("--target", type=float, required=True, help="Score the encode must reach (on the head's scale).")
@click.option("--pool", type=click.Choice(["mean", "harmonic_mean", "p5", "p1", "min"]), default="mean", show_default=True,
              help="What the target applies to: the video score (mean), or a pooling of its frame scores.")
@click.option("--samples", type=click.IntRange(1), default=4, show_default=True, help="Samples taken across the input.")
@click.option("--sample-duration", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Seconds per sample.")
@click.option("--min-crf", type=int, help="Lowest CRF searched (default: 10, or the encoder's minimum).")
@click.option("--max-crf", type=int, help="Highest CRF searched (default: the encoder's maximum).")
@click.option("--max-probes", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Most encodes tried before the best CRF so far is reported.")
@click.option("--max-encoded-percent", type=click.FloatRange(min=0, min_open=True),
              help="Refuse a CRF whose predicted size is above this share of the input file (ab-av1's default is 80; "
                   "default here: no limit).")
@click.option("--encode", "encode_path", type=click.Path(dir_okay=False),
              help="Then encode the whole input at the chosen CRF to this file (audio copied) and score it "
                   "(ab-av1's auto-encode); adds an `encode` event.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "ndjson"]), default="table", show_default=True,
              help="json: JSON Lines, one event per line as it happens (samples, probe..., result, encode; error when "
                   "it fails); ndjson is the same.")
@click.option("--vmaf", "with_vmaf", is_flag=True,
              help="Also measure each probe (against the sample reel) and the --encode output (against INPUT) with "
                   "libvmaf; adds `vmaf` to those events. Needs imageio-ffmpeg's ffmpeg.")
@encode_settings_options
@encoder_options
@model_options
@click.pass_context
@guarded
def crf_search_command(ctx, input_path, target, pool, samples, sample_duration, min_crf, max_crf, max_probes,
                       max_encoded_percent, encode_path, fmt, with_vmaf, enc, pix_format, vfilter, keyint, encoder,
                       preset, ffmpeg, head, frames, workdir, **model):
    """Find the CRF whose encode of INPUT scores --target, from scored samples (ab-av1 style).

    Exit 0 with a result, 1 when the target is out of reach, the CRF would be too big, or something failed
    (one line on stderr; with --format json the probes already printed stay valid and an error event marks
    the run partial), 2 for usage errors.
    """
    from contrique_video.encoding.crf_search import (
        DEFAULT_MIN_CRF,
        crf_search,
        encode_chosen,
    )
    from contrique_video.encoding.encode import ENCODERS

    check_crf_range(encoder, "--min-crf", min_crf)
    check_crf_range(encoder, "--max-crf", max_crf)
    spec = ENCODERS[encoder]
    lo = max(spec.crf_min, DEFAULT_MIN_CRF) if min_crf is None else min_crf
    hi = spec.crf_max if max_crf is None else max_crf
    if lo >= hi:
        raise click.UsageError(f"--min-crf {lo} must be below --max-crf {hi}")
    head = check_target(target, head, model.get("weights")) or head

    bars: list[tqdm] = []  # from the samples event: probes, at most --max-probes

    def on_event(event: dict) -> None:
        if event["type"] == "samples":
            bars.append(progress_bar(ctx, "crf-search", max_probes, unit="probe"))
        elif event["type"] == "probe":
            bars[0].update(1)
            bars[0].set_postfix_str(f"crf {event['crf']}: score {event['score']:.2f}")
        if fmt in ("json", "ndjson"):
            click.echo(json.dumps(event))
            sys.stdout.flush()
        elif event["type"] == "probe":
            log.info("crf %d: %s %.2f, %.0f kbps, encoded in %.1f s%s", event["crf"], pool, event["score"],
                     event["kbps"], event["encode_seconds"], f", VMAF {event['vmaf']:.2f}" if "vmaf" in event else "")

    if encode_path:
        guard_outputs([input_path], encode_path)
    settings = make_settings(encoder, preset, pix_format, vfilter, keyint, enc, ffmpeg)
    if with_vmaf:
        from contrique_video.encoding.reference import vmaf_ffmpeg

        vmaf_ffmpeg()
    scorer = open_scorer(head, model)
    try:
        with logs_above_bars():
            result = crf_search(input_path, scorer, encoder, target, samples=samples, sample_duration=sample_duration,
                                frames=frames, min_crf=min_crf, max_crf=max_crf, max_probes=max_probes, preset=preset,
                                ffmpeg=ffmpeg, workdir=workdir, on_event=on_event, settings=settings, pool=pool,
                                max_encoded_percent=max_encoded_percent, vmaf=with_vmaf)
    finally:
        for bar in bars:
            bar.close()
    if fmt == "table":
        size = f", {result.predicted_percent:.0f}% of the input" if result.predicted_percent is not None else ""
        took = f", about {result.predicted_encode_seconds:.0f} s to encode" if result.predicted_encode_seconds else ""
        click.echo(f"{encoder} crf {result.crf}: predicted {pool} score {result.score:.2f} (target {target:g}), "
                   f"{result.kbps:.0f} kbps, {result.predicted_bytes / 1e6:.2f} MB for the whole input{size}{took}")
    if not result.reached:
        fail(f"target {target:g} not reached: even CRF {result.crf} scores {result.score:.2f} ({pool})")
        sys.exit(1)
    if result.too_big:
        fail(f"CRF {result.crf} would be {result.predicted_percent:.0f}% of the input, above "
             f"--max-encoded-percent {max_encoded_percent:g}")
        sys.exit(1)
    if encode_path:
        log.info("encoding %s at crf %d to %s", input_path, result.crf, encode_path)
        event = encode_chosen(input_path, encode_path, result, scorer, frames=frames * samples, settings=settings,
                              ffmpeg=ffmpeg, vmaf=with_vmaf)
        if fmt in ("json", "ndjson"):
            on_event(event)
        else:
            pct = f", {event['percent']:.0f}% of the input" if event["percent"] is not None else ""
            vm = f", VMAF {event['vmaf']:.2f}" if "vmaf" in event else ""
            click.echo(f"{encode_path}: {pool} score {event['score']:.2f} (target {target:g}){vm}, "
                       f"{event['kbps']:.0f} kbps{pct}, encoded in {event['encode_seconds']:.0f} s")


@main.command("ladder")
@quiet_option
@click.argument("input_path", metavar="INPUT")
@click.option("--heights", default="1080,720,540,360", show_default=True,
              help="Rendition heights; those above the source's are skipped.")
@click.option("--crf", "crf_grid", default="18:42:4", show_default=True, callback=crf_list,
              help="CRFs: START:STOP:STEP (ascending, STOP included) or a list a,b,c.")
@click.option("--display", help="WxH the renditions are upscaled to and scored at (default: the source size).")
@click.option("--rungs", type=click.IntRange(1), default=4, show_default=True, help="Rungs to recommend from the hull.")
@output_dir_option("Folder for ladder.csv, ladder.json and ladder.png (ladder.partial.* if the run stops early).")
@click.option("--keep-renditions", is_flag=True, help="Keep the encodes in OUTPUT/renditions.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="stdout: a table of the renditions, or json: the ladder (ladder.json's object) on one line, "
                   "JSON Lines as in score and crf-search.")
@click.option("--vmaf", "with_vmaf", is_flag=True,
              help="Also measure every rendition (at the display size) against INPUT with libvmaf: a vmaf column.")
@encoder_options
@model_options
@click.pass_context
@guarded
def ladder_command(ctx, input_path, heights, crf_grid, display, rungs, outdir, out_alias, keep_renditions, fmt,
                   with_vmaf, encoder, preset, ffmpeg, head, frames, workdir, **model):
    """Encode INPUT at every height x CRF, score each rendition at the display size, and recommend rungs
    from the upper convex hull of score against bitrate.

    Exit 0 when the grid is complete, 1 when it stopped early (the finished renditions are written as
    ladder.partial.csv/json/png and the error is one line on stderr), 130 on Ctrl-C and 143 on SIGTERM
    (the finished renditions are written as ladder.partial.* too).
    """
    from contrique_video.encoding.ladder import build_ladder
    from contrique_video.runs.inputs import Terminated, sigterm_as_exception

    outdir = pick_output_dir(outdir, out_alias)
    try:
        sizes = [int(h) for h in heights.split(",")]
        shown = tuple(int(v) for v in display.lower().split("x")) if display else None
    except ValueError:
        raise click.BadParameter("give numbers: --heights 1080,720 and --display 1920x1080") from None
    if shown is not None and len(shown) != 2:
        raise click.BadParameter("give WxH, e.g. 1920x1080", param_hint="--display")
    check_crf_range(encoder, "--crf", *crf_grid)
    if with_vmaf:
        from contrique_video.encoding.reference import vmaf_ffmpeg

        vmaf_ffmpeg()
    scorer = open_scorer(head, model)
    bars: list[tqdm] = []

    def on_rendition(r) -> None:
        bars[0].update(1)
        bars[0].set_postfix_str(f"{r.height}p crf {r.crf}: score {r.score:.2f}")
        log.info("%dp crf %d: %.0f kbps, score %.2f%s", r.height, r.crf, r.kbps, r.score,
                 "" if r.vmaf is None else f", VMAF {r.vmaf:.2f}")

    try:
        with sigterm_as_exception(), logs_above_bars():
            try:
                ladder = build_ladder(input_path, scorer, encoder, sizes, crf_grid, display=shown, frames=frames,
                                      rungs=rungs, preset=preset, ffmpeg=ffmpeg, workdir=workdir,
                                      keep=Path(outdir) / "renditions" if keep_renditions else None,
                                      on_rendition=on_rendition, vmaf=with_vmaf,
                                      on_plan=lambda n: bars.append(progress_bar(ctx, "ladder", n, unit="rendition")))
            finally:
                for bar in bars:
                    bar.close()
    except (KeyboardInterrupt, Terminated) as exc:
        ladder = getattr(exc, "ladder", None)
        code, what = (130, "interrupted") if isinstance(exc, KeyboardInterrupt) else (143, "terminated")
        if ladder is None:  # stopped before the grid started: nothing to keep
            fail(what)
            sys.exit(code)
        report_ladder(ladder, outdir, fmt)
        fail(f"{what}: {len(ladder.renditions)} finished renditions kept as partial in {outdir}")
        sys.exit(code)
    report_ladder(ladder, outdir, fmt)
    if ladder.partial:
        fail(f"ladder stopped early, {len(ladder.renditions)} renditions kept as partial: {ladder.error}")
        sys.exit(1)


def report_ladder(ladder, outdir: str, fmt: str) -> None:
    """Write the ladder files (ladder.partial.* for a partial run) and print it on stdout."""
    from contrique_video.encoding.ladder import save

    paths = save(ladder, outdir)
    if fmt == "json":
        click.echo(json.dumps(ladder.record()))
    else:
        table = ladder.table()
        table["mark"] = np.where(table["rung"], "rung", np.where(table["on_hull"], "hull", ""))
        shown = ["height", "width", "crf", "kbps", "score"] + (["vmaf"] if "vmaf" in table else []) + ["mark"]
        click.echo(table[shown].to_string(index=False, float_format="%.2f"))
    log.info("wrote %s", ", ".join(map(str, paths)))
