"""The ``contrique-video`` command line: a thin layer over the Python API, one module per group of commands.

Data goes to stdout, logs and progress bars to stderr. Exit codes: 0 success, 1 an input or model
failed (each failure is one line on stderr), 2 a usage error, 130 on Ctrl-C, 143 on SIGTERM.
"""

from __future__ import annotations

import logging
import sys

import click

from contrique_video import __version__
from contrique_video.cli.encoding import crf_search_command, ladder_command
from contrique_video.cli.models import evaluate, export_onnx, features, fit, import_head, model_table, precision_check
from contrique_video.cli.options import fail
from contrique_video.cli.score import score
from contrique_video.cli.system import bench, info
from contrique_video.cli.train import train, train_branch


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


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="contrique-video")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or informational logs on stderr.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also the details behind the informational logs (e.g. the backend auto timings, every run).")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """No-reference video quality scores from CONTRIQUE features."""
    if quiet and verbose:
        raise click.UsageError("choose -q or -v, not both")
    ctx.obj = {"quiet": quiet}
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="contrique-video: %(message)s",
                        stream=sys.stderr)
    # -v: our own details only, not every library's debug output
    logging.getLogger("contrique_video").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.NOTSET)


for command in (score, features, import_head, export_onnx, bench, info, train, train_branch, fit, evaluate, precision_check,
                model_table, crf_search_command, ladder_command):
    main.add_command(command)
