"""``contrique-video score``: options in, :func:`contrique_video.runs.batch.score_many` does the run, results out.

Data goes to stdout (a table, JSON Lines or CSV, one input at a time as each finishes), failures to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import click
import pandas as pd
from click.core import ParameterSource

from contrique_video.cli.options import (
    decoder_option,
    display_option,
    fail,
    guard_outputs,
    guarded,
    logs_above_bars,
    model_options,
    open_scorer,
    option_group,
    output_file,
    quiet_option,
    sampling_options,
    shared,
)
from contrique_video.runs.batch import Outputs
from contrique_video.runs.bands import BAND_LEGEND, band
from contrique_video.runs.inputs import shorten

log = logging.getLogger("contrique_video")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")  # formats matplotlib writes without extra packages


@dataclass(frozen=True)
class Figures:
    """The pictures ``score`` draws of the inputs it scored (also after Ctrl-C): --plot, --report, --compare."""

    plot: str | None = None
    report: str | None = None
    compare: str | None = None


@dataclass(frozen=True)
class Cluster:
    """--engine (a Dask scheduler, or ``local``) and its --workers; no engine: score here."""

    engine: str | None = None
    workers: int | None = None


@click.command()
@quiet_option
@click.argument("inputs", nargs=-1)
@click.option("--manifest", type=click.Path(dir_okay=False), help="CSV or Parquet list of inputs (a `file` or `path` column), added to INPUT...")
@sampling_options("Score")
@decoder_option
@display_option("every frame is scaled to it and scored there: the size it is watched at, as in `ladder`. Without "
                "it each input is scored at its own size, and inputs of different sizes are not comparable (a "
                "warning says so).")
@model_options(click.option("--max-pixels", type=click.IntRange(1),
                            help="Refuse frames larger than this (default: 4096x2304, so all 4K)."))
@shared("format", "score: one row (table, csv) or object (json) per input.", choices=("table", "json", "csv"))
@option_group("outputs", Outputs, [
    shared("output", "one record per input (.jsonl/.ndjson or .csv), failures included, synced to disk as each "
                     "finishes. A file that already holds records is refused (exit 2, before any work) unless "
                     "--resume or --overwrite says what to do with them.",
           type=click.Path(dir_okay=False), callback=output_file(".jsonl", ".ndjson", ".csv")),
    shared("resume", "keep its records and score only the inputs not in it; --csv, --log and --parquet keep the "
                     "earlier inputs' rows and files too."),
    click.option("--overwrite", is_flag=True, help="Replace an --output file that already holds records."),
    click.option("--csv", "frames_csv", type=click.Path(dir_okay=False), callback=output_file(),
                 help="Write per-frame scores (file,frame,pts_time,score, and vmaf with --reference) here."),
    click.option("--parquet", type=click.Path(dir_okay=False), callback=output_file(),
                 help="Also write every record (with --resume, the earlier ones too) as one Parquet table at the end."),
    click.option("--log", "log_template", type=click.Path(dir_okay=False), callback=output_file(),
                 help="Write a libvmaf-style log per input (frames with frameNum, pts_time, contrique; pooled_metrics). "
                      "With several inputs put {stem}, {name} or {index} in the name, e.g. --log 'logs/{stem}.json'."),
    click.option("--log-fmt", "log_fmt", type=click.Choice(["json", "csv", "xml"]),
                 help="Format of --log, as libvmaf's --log_fmt (default: from the file's extension, else json)."),
    shared("reference", "per-frame `vmaf` at the scored frames and pooled values go into every output.",
           type=click.Path(dir_okay=False)),
    click.option("--vmaf-model", default="vmaf_v0.6.1", show_default=True, help="libvmaf model version for --reference."),
    shared("ffmpeg"),
])
@option_group("figures", Figures, [
    click.option("--plot", type=click.Path(dir_okay=False), callback=output_file(*PLOT_SUFFIXES),
                 help="Write a PNG (or .pdf, .svg) of per-frame scores over time, with the pooled score and the worst "
                      "segments marked."),
    click.option("--report", type=click.Path(dir_okay=False), callback=output_file(*PLOT_SUFFIXES),
                 help="Write a PNG (or .pdf, .svg) showing what the score saw: per input, the frame curve with the pooled "
                      "score and its quality band, and thumbnails of the worst and best frames with their times and "
                      "scores. One page for a batch, or one image per input with {stem}, {name} or {index} in the name."),
    click.option("--compare", type=click.Path(dir_okay=False), callback=output_file(*PLOT_SUFFIXES),
                 help="With --reference: a PNG (or .pdf, .svg) of our score beside VMAF (curves, scatter, and a table of "
                      "the frames where they disagree most), and the same table for every frame as CSV beside it."),
])
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Give up on an input after this many seconds.")
@option_group("cluster", Cluster, [
    click.option("--engine", metavar="ADDRESS|local",
                 help="Score on a Dask cluster: its scheduler (tcp://HOST:8786 or a scheduler .json file), or `local` "
                      "for worker processes here. Same records as a local run."),
    shared("workers", "for --engine local (default: one per core).", type=click.IntRange(1, 1024)),
])
@click.pass_context
@guarded
def score(ctx, inputs, manifest, sampling, decoder, display, model, fmt, outputs, figures, timeout, cluster):
    """Score videos or images: files, directories, globs, or `-` for a stream on stdin.

    Exit codes: 0 when every input was scored, 1 when some failed (each failure is one line on stderr and a
    record in --output), 2 for usage errors, 130 on Ctrl-C and 143 on SIGTERM (finished results are kept).
    """
    from contrique_video.errors import UsageError
    from contrique_video.runs.batch import CLI_NAMES, check_run, score_many
    from contrique_video.runs.inputs import Terminated, expand_inputs, read_manifest

    if not inputs and not manifest:
        raise click.UsageError("Missing argument 'INPUTS...' (or --manifest FILE)")
    names = expand_inputs(list(inputs))
    if display and "-" in names:
        raise click.UsageError("`-` (stdin) cannot be scaled to --display; give files")
    if manifest:
        names = list(dict.fromkeys(names + read_manifest(manifest)))
    written = (outputs.frames_csv, figures.plot, outputs.output, outputs.parquet, figures.report)
    guard_outputs([*names, model.weights, model.head, manifest], *written)
    if cluster.engine and (outputs.log_template or figures.report or outputs.reference):
        raise click.UsageError("--log, --report and --reference run locally; drop --engine (or use --csv, --plot)")
    if (outputs.ffmpeg or ctx.get_parameter_source("vmaf_model") is not ParameterSource.DEFAULT) and not outputs.reference:
        raise click.UsageError("--ffmpeg and --vmaf-model are for --reference REF")
    if figures.compare and not outputs.reference:
        raise click.UsageError("--compare needs --reference REF (it sets our score beside VMAF)")
    try:
        check_run(outputs, cluster.engine, n_inputs=len(names), names=CLI_NAMES)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    if figures.compare:
        guard_outputs([*names, outputs.reference], figures.compare, str(Path(figures.compare).with_suffix(".csv")))
    if asked := [f"--{name}" for name, value in vars(figures).items() if value]:
        from contrique_video.extras import require

        require("matplotlib", asked[0], usage=True)  # exit 2 before any work
    if outputs.reference:
        if "-" in names:
            raise click.UsageError("`-` (stdin) cannot be compared with --reference; give files")
        guard_outputs([outputs.reference], *written)
        from contrique_video.encoding.reference import vmaf_ffmpeg as find_ffmpeg

        find_ffmpeg(outputs.ffmpeg)  # fail before scoring when there is no ffmpeg to run libvmaf
    if cluster.engine:
        from contrique_video.runs.dask import DaskExecutor

        if "-" in names:
            raise click.UsageError("`-` (stdin) cannot be scored with --engine; give files")
        if ctx.get_parameter_source("device") is ParameterSource.DEFAULT:
            model = replace(model, device="auto")  # each worker uses its GPU if it has one
        executor = DaskExecutor(cluster.engine, cluster.workers, model)  # resolves the model and head once, here
        scorer, head_range = None, executor.settings.head.range if executor.settings.head else None
    else:
        scorer, executor = open_scorer(model), None
        h = scorer.check_head()
        head_range = h.range
        log.info("model %s, head %s (%s, %s), sampling: %s", scorer.model_id, h.name, h.scale,
                 "higher is better" if h.higher_is_better else "lower is better", sampling.describe())
    printer = Printer(fmt, head_range, in_order=bool(cluster.engine), vmaf=bool(outputs.reference))
    failures, stopped = 0, None
    outcomes = score_many(names, scorer=scorer, executor=executor, sampling=sampling, decoder=decoder, timeout=timeout,
                          display=display, outputs=outputs, progress=not ctx.obj["quiet"])
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
    write_figures(results, figures)
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


def write_figures(results: list, figures: Figures) -> None:
    """--plot, --report and --compare of the inputs scored, also after Ctrl-C or SIGTERM."""
    if not results:
        return
    if figures.plot:
        from contrique_video.runs.plot import plot_frames

        plot_frames(results, figures.plot)
    if figures.report:
        from contrique_video.runs.report import write_reports

        log.info("wrote %s", ", ".join(map(str, write_reports(results, figures.report))))
    if figures.compare:
        from contrique_video.runs.report import write_compare

        log.info("wrote %s and %s", *write_compare(results, figures.compare))
