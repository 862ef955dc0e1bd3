"""The ``contrique-video`` command line: a thin layer over the Python API, one module per group of commands.

Data goes to stdout, logs and progress bars to stderr. Exit codes: 0 success, 1 an input or model
failed (each failure is one line on stderr), 2 a usage error, 130 on Ctrl-C, 143 on SIGTERM.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from contrique_video import __version__
from contrique_video.cli.options import fail
from contrique_video.cli.vocabulary import EXIT_CODES, shared

#: Command name -> "module:function". A command's module (and what it imports: pandas, PyAV, torch) loads only
#: when that command runs or its help is shown, so a one-image `score` does not pay for `ladder`'s imports.
COMMANDS = {
    "score": "contrique_video.cli.score:score",
    "features": "contrique_video.cli.models:features",
    "import-head": "contrique_video.cli.models:import_head",
    "export-onnx": "contrique_video.cli.models:export_onnx",
    "bench": "contrique_video.cli.system:bench",
    "info": "contrique_video.cli.system:info",
    "train": "contrique_video.cli.train:train",
    "train-branch": "contrique_video.cli.train:train_branch",
    "fit": "contrique_video.cli.models:fit",
    "evaluate": "contrique_video.cli.models:evaluate",
    "precision-check": "contrique_video.cli.models:precision_check",
    "model-table": "contrique_video.cli.models:model_table",
    "degradation-check": "contrique_video.cli.models:degradation_check",
    "crf-search": "contrique_video.cli.encoding:crf_search_command",
    "ladder": "contrique_video.cli.encoding:ladder_command",
}


class OneLineGroup(click.Group):
    """Commands loaded on first use (:data:`COMMANDS`); usage errors (unknown option, bad value) as one line and
    exit 2, like every other error here."""

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, _, attr = COMMANDS[name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            if "Exit codes:" not in (command.help or ""):  # a command that says no more than every command
                command.help = f"{command.help or ''}\n\n{EXIT_CODES}".lstrip()
            self.add_command(command, name)
        return self.commands.get(name)

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
@shared("quiet")
@click.option("-v", "--verbose", is_flag=True,
              help="Also the details behind the informational logs (e.g. which path backend auto runs and why).")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """No-reference video quality scores from CONTRIQUE features."""
    if quiet and verbose:
        raise click.UsageError("choose -q or -v, not both")
    ctx.obj = {"quiet": quiet}
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="contrique-video: %(message)s",
                        stream=sys.stderr)
    # -v: our own details only, not every library's debug output
    logging.getLogger("contrique_video").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
