"""What the commands share: one-line errors, common options, output checks, progress bars, the Scorer they open.

Checks run while parsing, so a typo fails at once (exit 2), before any model loads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import click
from tqdm import tqdm

from contrique_video.backends import BACKENDS, PRECISIONS
from contrique_video.cli.vocabulary import shared
from contrique_video.decode.sampler import Sampling
from contrique_video.decode import DECODERS
from contrique_video.errors import ContriqueError, InputError
from contrique_video.extras import EXTRAS, missing
from contrique_video.models.transforms import TwoScale

log = logging.getLogger("contrique_video")


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
        except ModuleNotFoundError as exc:  # an optional package imported where it is used: name its extra
            if (exc.name or "").split(".")[0] not in EXTRAS:
                raise
            fail(str(missing(exc.name, f"contrique-video {click.get_current_context().info_name}")))
            sys.exit(1)
        except BrokenPipeError:  # the reader closed stdout (`| head`): stop quietly, as Unix filters do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
            sys.exit(141)  # 128 + SIGPIPE, as a shell reports a filter killed by it
        except OSError as exc:  # e.g. an output folder that does not exist, a full disk
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
            sys.exit(1)
        except KeyboardInterrupt:
            fail("interrupted")
            sys.exit(130)

    return wrapper


def command_line(ctx: click.Context) -> str:
    """The command as typed, less the options left at their defaults: how a results row was made."""
    import shlex

    words = ["contrique-video", ctx.info_name]
    for param in ctx.command.params:
        if param.name not in ctx.params or ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        values = [str(v) for v in value] if isinstance(value, (tuple, list)) else [str(value)]
        if isinstance(param, click.Argument):
            words += values
        elif getattr(param, "is_flag", False):
            words.append(param.opts[-1])
        elif param.multiple:
            words += [w for v in values for w in (param.opts[-1], v)]
        else:
            words += [param.opts[-1], ",".join(values)]
    return " ".join(shlex.quote(w) for w in words)


def quiet_option(fn):
    """`-q` after the subcommand too (`score in.mp4 -q`), as users type it."""

    def silence(ctx: click.Context, param, value: bool) -> None:
        if value:
            ctx.find_object(dict)["quiet"] = True
            logging.getLogger("contrique_video").setLevel(logging.WARNING)

    return shared("quiet", expose_value=False, callback=silence)(fn)


def apply(options: list, fn):
    """Decorate ``fn`` with click options, listed in the order --help shows them."""
    for option in reversed(options):
        fn = option(fn)
    return fn


def option_group(name: str, build, options: list):
    """Decorate a command with ``options`` and hand its callback their values as ONE argument ``name``,
    ``build(**values)`` (a dataclass, a Sampling, a dict): a command takes a few grouped arguments, not one
    per flag. The flags, their order in --help and their checks stay as they are."""

    def decorate(fn):
        params = apply(options, lambda: None).__click_params__
        names = [p.name for p in params]

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            kwargs[name] = build(**{n: kwargs.pop(n) for n in names})
            return fn(*args, **kwargs)

        wrapper.__click_params__ = [*getattr(fn, "__click_params__", []), *params]
        return wrapper

    return decorate


def sampling_options(verb: str):
    """Sampling flags shared by ``score`` and ``features`` (``verb`` says what is done to the frames chosen),
    handed to the command as one ``sampling`` (a :class:`Sampling`); at most one selection mode."""
    return option_group("sampling", make_sampling, [
        click.option("--all", "all_frames", is_flag=True, help=f"{verb} every frame."),
        click.option("--fps", type=click.FloatRange(min=0, min_open=True), help=f"{verb} F frames per second of video time."),
        shared("frames", f"{verb.lower()} N frames over the time range (default 64: enough for a stable video score; "
                         "crf-search and ladder default to 8 per encode, since they score many encodes)."),
        click.option("--every", type=click.IntRange(1), help=f"{verb} every K-th frame."),
        click.option("--keyframes", is_flag=True, help=f"{verb} key frames only (fast: other frames are not decoded)."),
        click.option("--start", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Start time in seconds."),
        click.option("--duration", type=click.FloatRange(min=0, min_open=True),
                     help="Length of the time range in seconds (default: to the end)."),
    ])


def decoder_option(fn):
    return click.option("--decoder", type=click.Choice(DECODERS.keys()), default="pyav", show_default=True,
                        help="Frame decoder for videos: " + "; ".join(f"{d.name}: {d.description}" for d in DECODERS.values())
                        + ".")(fn)


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


def model_options(*extra, head: bool = True):
    """The Scorer's options (``--head`` unless ``head`` is False; ``extra`` ones of a command's own), handed to the
    command as one ``model`` (:class:`~contrique_video.runs.settings.ScorerSettings`; see :func:`open_scorer`)."""
    return option_group("model", scorer_settings, [
        *([shared("head")] if head else []),
        shared("weights"),
        click.option("--batch-size", type=click.IntRange(1, 256), default=4, show_default=True,
                     help="Frames per forward pass (on the CPU no more pixels than one 1080p frame, to bound memory)."),
        shared("threads"),
        shared("device"),
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     envvar="CONTRIQUE_VIDEO_BACKEND",
                     help="Encoder path; auto picks, without timing, the preferred path that keeps fp32 scores "
                          "(`contrique-video bench --autotune` times them here instead; `contrique-video -v` says "
                          "which and why)."),
        shared("precision", "where the backend supports it (int8: onnxruntime on CPU)."),
        *extra,
    ])


def scorer_settings(**values):
    """:func:`model_options` values as settings; an unset --max-pixels keeps the Scorer's default."""
    from contrique_video.runs.settings import ScorerSettings

    return ScorerSettings(**{k: v for k, v in values.items() if not (k == "max_pixels" and v is None)})


def open_scorer(model):
    """A Scorer from ``model_options``' settings, resolved once (card, weights, head), its head checked."""
    scorer = model.resolved().scorer()
    scorer.check_head()
    return scorer


def known_head(head: str | None, weights: str | None):
    """The head read from its JSON alone (no model loaded), or None when it is only known with the model
    (custom weights and no --head: the model then says what is missing)."""
    from contrique_video.api import default_head
    from contrique_video.models.head import resolve_head

    if head is None and weights is not None:
        return None
    name = head or default_head()
    return None if name is None else resolve_head(name)


def output_file(*suffixes: str):
    """A callback for output-file options: the folder must exist and, given ``suffixes``, the name must end
    in one of them."""

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


def backend_pairs(ctx: click.Context, param: click.Parameter, value: str | None) -> list[tuple[str, str]] | None:
    """``BACKEND:PRECISION,...`` -> pairs, each named by the backend registry (``auto`` is not a path)."""
    from contrique_video.backends import BACKENDS, PRECISIONS

    if value is None:
        return None
    pairs = [tuple(c.split(":", 1)) for c in value.split(",")]
    if any(len(p) != 2 or p[0] not in BACKENDS or p[1] not in PRECISIONS or "auto" in p for p in pairs):
        raise click.BadParameter(f"give BACKEND:PRECISION pairs, e.g. torch-compile:fp32 (backends: "
                                 f"{', '.join(b for b in BACKENDS if b != 'auto')}; precisions: "
                                 f"{', '.join(p for p in PRECISIONS if p != 'auto')})")
    return pairs


def frame_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """A callback for ``WIDTHxHEIGHT`` options (``1920x1080``): the (height, width) the code uses."""
    match = re.fullmatch(r"(\d+)[xX](\d+)", value, flags=re.ASCII)
    width, height = (int(n) for n in match.groups()) if match else (0, 0)
    low = TwoScale.min_side
    if not (low <= width <= 8192 and low <= height <= 8192):
        raise click.BadParameter(f"{value}: give WIDTHxHEIGHT, each {low}-8192, e.g. 1280x720")
    return height, width


def display_option(help: str):
    """``--display WxH``, the size inputs are scaled to and scored at (``score``, ``ladder``): (width, height) or None."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
        if value is None:
            return None
        height, width = frame_size(ctx, param, value)
        return width, height

    return shared("display", help, callback=parse)


def output_dir_option(help: str):
    """``-o/--output DIR``, as every other command names its output, plus the old ``--out`` as a hidden
    alias that still works (with one deprecation warning) so existing scripts keep running; the command gets
    the folder as ``outdir``."""
    return option_group("outdir", pick_output_dir, [
        shared("output", f"{help}  [required]", dest="outdir", type=click.Path(file_okay=False), metavar="DIR"),
        click.option("--out", "out_alias", hidden=True, type=click.Path(file_okay=False),
                     help="Deprecated alias of -o/--output."),
    ])


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


def guard_outputs(inputs, *outputs) -> None:
    """Never overwrite an input (media, weights, head, table) with an output."""
    ins = {Path(i).resolve() for i in inputs if i and i != "-"}
    for out in outputs:
        if out and Path(out).resolve() in ins:
            raise InputError(f"output {out} is also an input; refusing to overwrite it")


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


class RegisteredChoice(click.Choice):
    """A choice read from a registry each time it is used (help, checking), so a family or backend registered
    after the CLI was imported is offered too."""

    def __init__(self, names: Callable[[], Iterable[str]]):
        self._names = names
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())

    @choices.setter
    def choices(self, _value) -> None:
        pass  # click.Choice.__init__ assigns its (empty) tuple; the registry stays the source

