"""One vocabulary across commands (#29 item 7): an option name means one thing wherever it appears, every option
is defined once, and every command's help states the exit codes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from contrique_video.cli import main
from contrique_video.cli.vocabulary import FORMATS, SHARED, SharedOption, shared

CLI = Path(__file__).resolve().parents[2] / "contrique_video" / "cli"


def commands() -> dict[str, click.Command]:
    ctx = click.Context(main)
    return {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}


def options_by_name(cmds: dict[str, click.Command]) -> dict[str, list[tuple[str, click.Option]]]:
    """``--flag`` -> the (command, option) pairs that have it (hidden aliases too)."""
    found: dict[str, list[tuple[str, click.Option]]] = {}
    for name, cmd in cmds.items():
        for param in cmd.params:
            if isinstance(param, click.Option):
                for flag in param.opts:
                    found.setdefault(flag, []).append((name, param))
    return found


def vocabulary_problems(cmds: dict[str, click.Command]) -> list[str]:
    """An option name in several commands must come from one shared definition: the same definition
    everywhere, its help starting with the definition's meaning, its choices drawn from the definition's
    vocabulary; a name in one command only is that command's own."""
    problems = []
    for flag, uses in options_by_name(cmds).items():
        if len({c for c, _ in uses}) < 2:
            continue
        definitions = {getattr(o, "definition", None) for _, o in uses}
        if len(definitions) > 1 or None in definitions and not all(o is uses[0][1] or _same(o, uses[0][1])
                                                                   for _, o in uses):
            problems.append(f"{flag}: different definitions in {', '.join(c for c, _ in uses)}")
            continue
        for command, o in uses:
            if isinstance(o, SharedOption):
                if not (o.help or "").startswith(o.meaning):
                    problems.append(f"{command} {flag}: help does not start with its meaning {o.meaning!r}")
                choices = getattr(o.type, "choices", None)
                if choices is not None and set(choices) - set(o.vocabulary):
                    problems.append(f"{command} {flag}: choices {sorted(set(choices) - set(o.vocabulary))} are "
                                    f"not in its vocabulary")
    return problems


def _same(a: click.Option, b: click.Option) -> bool:
    """Two plain options from one factory: the same flags, type and choices."""
    return (a.opts == b.opts and type(a.type) is type(b.type)
            and getattr(a.type, "choices", None) == getattr(b.type, "choices", None))


def test_an_option_name_means_one_thing_in_every_command():
    assert vocabulary_problems(commands()) == []


def test_the_check_sees_an_option_that_means_two_things():
    @click.command()
    @click.option("--format", type=click.Choice(["table", "yaml"]))
    def one(format): ...

    @click.command()
    @shared("format", choices=("table", "json"))
    def two(fmt): ...

    @click.command()
    @shared("format", choices=("table", "json"))
    def three(fmt): ...

    assert vocabulary_problems({"two": two, "three": three}) == []
    assert vocabulary_problems({"one": one, "two": two}) == ["--format: different definitions in one, two"]


def declared_flags(folder: Path = CLI) -> list[str]:
    """Every long flag written in an option declaration (``click.option(...)`` or a shared ``Definition``),
    once per place it is written."""
    flags = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("click.option", "Definition"):
                args = node.args[0].elts if ast.unparse(node.func) == "Definition" else node.args
                flags += [a.value.split("/")[0] for a in args
                          if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")]
    return flags


def test_every_option_is_defined_once():
    flags = declared_flags()
    twice = sorted({f for f in flags if flags.count(f) > 1})
    assert twice == [], f"defined in more than one place (put them in cli/options.py SHARED): {twice}"
    assert {"--format", "--output", "--ffmpeg", "--frames", "--threads"} <= set(flags)


def test_the_shared_formats_and_their_meanings():
    cmds = commands()
    formats = {c: o for flag, uses in options_by_name(cmds).items() if flag == "--format" for c, o in uses}
    assert set(formats) >= {"score", "crf-search", "ladder"}
    assert tuple(formats["score"].type.choices) == ("table", "json", "csv")
    assert tuple(formats["ladder"].type.choices) == ("table", "json", "csv")
    assert tuple(formats["crf-search"].type.choices) == ("table", "json")
    for command, option in formats.items():
        for choice in option.type.choices:
            assert f"{choice}: {FORMATS[choice]}" in option.help, (command, choice)
    assert SHARED["format"].vocabulary == tuple(FORMATS)
    # crf-search's old name for json still works, hidden
    assert formats["crf-search"].type.convert("ndjson", None, None) == "json"
    assert "ndjson" not in formats["crf-search"].help


def test_output_and_ffmpeg_mean_one_thing():
    uses = options_by_name(commands())
    assert {c for c, _ in uses["--output"]} >= {"score", "crf-search", "ladder", "features", "train"}
    assert all(o.opts[:2] == ["--output", "-o"] or set(o.opts) == {"--output", "-o"} for _, o in uses["--output"])
    helps = {o.help for _, o in uses["--ffmpeg"]}
    assert len(helps) == 1 and {c for c, _ in uses["--ffmpeg"]} == {"score", "crf-search", "ladder"}
    frames = {c: o.help for c, o in uses["--frames"]}
    assert "default 64" in frames["score"] and "default 8" in frames["crf-search"] and "default 8" in frames["ladder"]


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_lists_its_exit_codes(name):
    text = click.Context(commands()[name], info_name=name).get_help()
    text = " ".join(text.split())
    match = re.search(r"Exit codes: 0 .{0,300}?\b1 .{0,300}?\b2 ", text)
    assert match, f"{name} --help does not list exit codes 0, 1 and 2"
