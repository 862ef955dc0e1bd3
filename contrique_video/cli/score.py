"""``contrique-video score``: options in, :func:`contrique_video.runs.batch.score_many` does the run, results out.

Data goes to stdout (a table, JSON Lines or CSV, one input at a time as each finishes), failures to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

import click
import pandas as pd
from click.core import ParameterSource

from contrique_video.cli.options import (
    display_option,
    fail,
    guard_outputs,
    guarded,
    known_head,
    logs_above_bars,
    make_sampling,
    model_options,
    open_scorer,
    output_file,
    quiet_option,
    sampling_options,
)
from contrique_video.runs.bands import BAND_LEGEND, band
from contrique_video.runs.inputs import shorten

log = logging.getLogger("contrique_video")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")  # formats matplotlib writes without extra packages


@click.command()
@quiet_option
@click.argument("inputs", nargs=-1)
@click.option("--head", help="Head name (see `info`) or a head JSON file (default: the built-in model's head).")
@sampling_options("Score")
@display_option("Scale every frame to this size and score it there, e.g. 1920x1080: the size it is watched at, as "
                "`ladder --display` does. Without it each input is scored at its own size, and inputs of different "
                "sizes are not comparable (a warning says so).")
@model_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="stdout format: a table, one JSON object per input per line, or CSV with a header.")
@click.option("--csv", "frames_csv", type=click.Path(dir_okay=False), callback=output_file(), help="Write per-frame scores (file,frame,pts_time,score, and vmaf with --reference) here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), callback=output_file(*PLOT_SUFFIXES),
              help="Write a PNG (or .pdf, .svg) of per-frame scores over time, with the pooled score and the worst segments marked.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), callback=output_file(".jsonl", ".ndjson", ".csv"),
              help="Also write one record per input (.jsonl/.ndjson or .csv), failures included, synced to disk as each "
                   "finishes. A file that already holds records is refused (exit 2, before any work) unless --resume "
                   "or --overwrite says what to do with them.")
@click.option("--resume", is_flag=True,
              help="Keep the records already in --output and score only the inputs not in it; --csv, --log and "
                   "--parquet keep the earlier inputs' rows and files too.")
@click.option("--overwrite", is_flag=True, help="Replace an --output file that already holds records.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Give up on an input after this many seconds.")
@click.option("--max-pixels", type=click.IntRange(1),
              help="Refuse frames larger than this (default: 4096x2304, so all 4K).")
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
@click.option("--report", "report_path", type=click.Path(dir_okay=False), callback=output_file(*PLOT_SUFFIXES),
              help="Write a PNG (or .pdf, .svg) showing what the score saw: per input, the frame curve with the pooled score and "
                   "its quality band, and thumbnails of the worst and best frames with their times and scores. One "
                   "page for a batch, or one image per input with {stem}, {name} or {index} in the name.")
@click.option("--reference", "reference", type=click.Path(dir_okay=False),
              help="Also compute VMAF (libvmaf, full reference) of each input against this file; per-frame `vmaf` "
                   "at the scored frames and pooled values go into the records and logs.")
@click.option("--vmaf-model", default="vmaf_v0.6.1", show_default=True, help="libvmaf model version for --reference.")
@click.option("--ffmpeg", "vmaf_ffmpeg", type=click.Path(dir_okay=False),
              help="ffmpeg with libvmaf for --reference (default: imageio-ffmpeg's static build).")
@click.option("--compare", "compare_path", type=click.Path(dir_okay=False), callback=output_file(*PLOT_SUFFIXES),
              help="With --reference: a PNG (or .pdf, .svg) of our score beside VMAF (curves, scatter, and a table of the frames "
                   "where they disagree most), and the same table for every frame as CSV beside it.")
@click.pass_context
@guarded
def score(ctx, inputs, head, all_frames, fps, frames, every, keyframes, start, duration, decoder, display, weights,
          batch_size, threads, device, backend, precision, fmt, frames_csv, plot_path, output, resume, overwrite, timeout,
          max_pixels,
          engine, engine_workers, manifest, parquet_path, log_template, log_fmt, report_path, reference, vmaf_model,
          vmaf_ffmpeg, compare_path):
    """Score videos or images: files, directories, globs, or `-` for a stream on stdin.

    Exit code 0 when every input was scored, 1 when some failed (each failure is one line on stderr and a
    record in --output), 2 for usage errors, 130 on Ctrl-C and 143 on SIGTERM (finished results are kept).
    """
    from contrique_video.errors import UsageError
    from contrique_video.runs.batch import check_run, score_many
    from contrique_video.runs.inputs import Terminated, expand_inputs, read_manifest
    from contrique_video.runs.logs import check_log_template

    if resume and not output:
        raise click.UsageError("--resume needs --output (the file that records finished inputs)")
    sampling = make_sampling(all_frames, fps, frames, every, keyframes, start, duration)
    if not inputs and not manifest:
        raise click.UsageError("Missing argument 'INPUTS...' (or --manifest FILE)")
    names = expand_inputs(list(inputs))
    if display and "-" in names:
        raise click.UsageError("`-` (stdin) cannot be scaled to --display; give files")
    if manifest:
        names = list(dict.fromkeys(names + read_manifest(manifest)))
    guard_outputs([*names, weights, head, manifest], frames_csv, plot_path, output, parquet_path, report_path)
    if log_fmt and not log_template:
        raise click.UsageError("--log-fmt needs --log FILE")
    if log_template:
        try:
            check_log_template(log_template, len(names))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if engine and (log_template or report_path or reference):
        raise click.UsageError("--log, --report and --reference run locally; drop --engine (or use --csv, --plot)")
    if (vmaf_ffmpeg or ctx.get_parameter_source("vmaf_model") is not ParameterSource.DEFAULT) and not reference:
        raise click.UsageError("--ffmpeg and --vmaf-model are for --reference REF")
    if compare_path and not reference:
        raise click.UsageError("--compare needs --reference REF (it sets our score beside VMAF)")
    try:
        check_run(output=output, resume=resume, overwrite=overwrite, parquet=parquet_path,
                  executor=engine, reference=reference, vmaf_ffmpeg=vmaf_ffmpeg)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    if compare_path:
        guard_outputs([*names, reference], compare_path, str(Path(compare_path).with_suffix(".csv")))
    if reference:
        if "-" in names:
            raise click.UsageError("`-` (stdin) cannot be compared with --reference; give files")
        guard_outputs([reference], frames_csv, plot_path, output, parquet_path, report_path)
        from contrique_video.encoding.reference import vmaf_ffmpeg as find_ffmpeg

        find_ffmpeg(vmaf_ffmpeg)  # fail before scoring when there is no ffmpeg to run libvmaf
    model = dict(weights=weights, device=device, backend=backend, precision=precision, batch_size=batch_size,
                 threads=threads, **({"max_pixels": max_pixels} if max_pixels is not None else {}))
    if engine:
        from contrique_video.runs.dask import DaskExecutor

        if "-" in names:
            raise click.UsageError("`-` (stdin) cannot be scored with --engine; give files")
        if ctx.get_parameter_source("device") is ParameterSource.DEFAULT:
            model["device"] = "auto"  # each worker uses its GPU if it has one
        known = known_head(head, weights)
        head_range = known.range if known else None
        scorer, executor = None, DaskExecutor(engine, engine_workers, {**model, "head": head})
    else:
        scorer, executor = open_scorer(head, model), None
        h = scorer.check_head()
        head_range = h.range
        log.info("model %s, head %s (%s, %s), sampling: %s", scorer.model_id, h.name, h.scale,
                 "higher is better" if h.higher_is_better else "lower is better", sampling.describe())
    printer = Printer(fmt, head_range, in_order=bool(engine), vmaf=bool(reference))
    failures, stopped = 0, None
    outcomes = score_many(names, scorer=scorer, executor=executor, sampling=sampling, decoder=decoder, timeout=timeout,
                          output=output, resume=resume, overwrite=overwrite, frames_csv=frames_csv, parquet=parquet_path,
                          log_template=log_template, log_fmt=log_fmt, reference=reference, vmaf_model=vmaf_model,
                          vmaf_ffmpeg=vmaf_ffmpeg, progress=not ctx.obj["quiet"], display=display)
    try:
        with logs_above_bars(), contextlib.closing(outcomes):
            for outcome in outcomes:
                if outcome.result is None:
                    failures += 1
                    fail(outcome.error)
                else:
                    printer.add(outcome.index, outcome.result)
    except Terminated:
        stopped = 143
    except KeyboardInterrupt:
        stopped = 130
    results = printer.finish()
    write_figures(results, plot_path, report_path, compare_path)
    if stopped:
        fail(f"{'terminated' if stopped == 143 else 'interrupted'}: the {len(results)} inputs scored before it are kept")
        sys.exit(stopped)
    sys.exit(1 if failures else 0)


class Printer:
    """stdout of ``score``: each input's result as soon as it is done, so an interrupted run keeps what it
    printed; ``in_order`` holds the table's rows until the end (a cluster finishes inputs out of order);
    ``vmaf`` (a run with --reference) adds the VMAF columns."""

    def __init__(self, fmt: str, head_range: tuple[float, float] | None, in_order: bool, vmaf: bool = False):
        from contrique_video.runs.records import record_columns

        self.fmt, self.in_order = fmt, in_order
        self.columns = record_columns(vmaf)
        self.table = ScoreTable(head_range, vmaf) if fmt == "table" else None
        self.results: list[tuple[int, object]] = []

    def add(self, index: int, result) -> None:
        self.results.append((index, result))
        if self.table is not None:
            if not self.in_order:
                self.table.row(result)
        elif self.fmt == "json":
            click.echo(json.dumps(result.record()))
        else:
            from contrique_video.runs.records import flat_row

            row = pd.DataFrame([flat_row(result.record(), self.columns)], columns=self.columns)
            click.echo(row.to_csv(index=False, header=len(self.results) == 1, float_format="%.4f"), nl=False)
        sys.stdout.flush()

    def finish(self) -> list:
        """The table's held rows and its legend; returns the results in input order."""
        results = [r for _, r in sorted(self.results, key=lambda item: item[0])]
        if self.table is not None:
            for result in results if self.in_order else []:
                self.table.row(result)
            self.table.footer()
        return results


class ScoreTable:
    """``score --format table`` on stdout: the header with the first row, each row as its input finishes
    (so Ctrl-C keeps the rows printed), and a legend of the scale and columns after the last row.

    Bands are given for heads on a 0-100 scale where higher is better (the built-in head's); ``-`` otherwise.
    ``vmaf`` adds VMAF's mean and 5th percentile over the scored frames (a run with --reference).
    """

    FILE_WIDTH = 40

    def __init__(self, head_range: tuple[float, float] | None, vmaf: bool = False):
        self.range = tuple(head_range) if head_range is not None else None
        self.vmaf = vmaf
        self.first = None

    def row(self, r) -> None:
        if self.first is None:
            self.first = r
            click.echo(f"{'file':<{self.FILE_WIDTH}} {'score':>7} {'band':<9} {'p5':>7} {'min':>7} {'frames':>6}"
                       + (f" {'vmaf':>7} {'vmaf_p5':>7}" if self.vmaf else ""))
        word = band(r.score) if self.bands(r) else "-"
        line = (f"{shorten(r.file, self.FILE_WIDTH):<{self.FILE_WIDTH}} {r.score:7.2f} {word:<9} "
                f"{r.pooled['p5']:7.2f} {r.pooled['min']:7.2f} {r.frames_scored:6d}")
        if self.vmaf:
            ref = r.reference or {}
            line += f" {_cell(ref.get('vmaf'))} {_cell((ref.get('vmaf_pooled') or {}).get('p5'))}"
        click.echo(line)
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
        click.echo(f"score: predicted {scale} ({direction}) by head '{r.head}' from the mean of the frames' features "
                   f"(not the mean of the frame scores); model {r.model}")
        click.echo(f"p5: 5th percentile of the frame scores (the head applied to each frame); min: lowest frame score "
                   f"({worst})" + (f"; {BAND_LEGEND}" if self.bands(r) else ""))
        if self.vmaf:
            click.echo("vmaf, vmaf_p5: VMAF against the reference, mean and 5th percentile over the scored frames")
        sys.stdout.flush()


def _cell(value: float | None) -> str:
    return f"{value:7.2f}" if value is not None else f"{'-':>7}"


def write_figures(results: list, plot_path: str | None, report_path: str | None, compare_path: str | None) -> None:
    """--plot, --report and --compare of the inputs scored, also after Ctrl-C or SIGTERM."""
    if not results:
        return
    if plot_path:
        from contrique_video.runs.plot import plot_frames

        plot_frames(results, plot_path)
    if report_path:
        from contrique_video.runs.report import write_reports

        log.info("wrote %s", ", ".join(map(str, write_reports(results, report_path))))
    if compare_path:
        from contrique_video.runs.report import write_compare

        log.info("wrote %s and %s", *write_compare(results, compare_path))
