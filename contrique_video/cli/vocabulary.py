"""One vocabulary for every command: each shared option defined once (its flags, meaning, type and choices),
the ``--format`` names and what they mean, and the exit codes every help states (tests/cli/test_vocabulary.py)."""

from __future__ import annotations

import dataclasses

import click

from contrique_video.backends import PRECISIONS


#: What every command says about exit codes (a command may say more about when 1 happens).
EXIT_CODES = ("Exit codes: 0 success, 1 an input or model failed (one line on stderr each), 2 a usage error, "
              "130 on Ctrl-C.")

#: ``--format`` choices and what each means, the same in every command (a command offers those that fit its
#: data: csv where the data is rows).
FORMATS = {
    "table": "a table for people",
    "json": "JSON Lines, one JSON object per line",
    "csv": "CSV with a header, one row per line",
    "markdown": "a Markdown table",
}
#: Old names still accepted (hidden from --help): crf-search's ``ndjson`` was its name for json.
FORMAT_ALIASES = {"ndjson": "json"}


class FormatChoice(click.Choice):
    """``--format``'s choices, plus the hidden aliases of :data:`FORMAT_ALIASES`."""

    def convert(self, value, param, ctx):
        return super().convert(FORMAT_ALIASES.get(value, value), param, ctx)


class SharedOption(click.Option):
    """An option made by :func:`shared` from its one definition in :data:`SHARED`; ``definition`` names it, so a
    test can check that an option name means the same in every command that has it."""

    def __init__(self, *args, definition: str, meaning: str, vocabulary: tuple = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.definition, self.meaning, self.vocabulary = definition, meaning, vocabulary


@dataclasses.dataclass(frozen=True)
class Definition:
    """One option as every command has it: its flags, what it means (the start of its help), its type and
    default, and (for a choice) the vocabulary a command picks its choices from."""

    decls: tuple[str, ...]
    meaning: str
    attrs: dict = dataclasses.field(default_factory=dict)
    vocabulary: tuple[str, ...] = ()


SHARED: dict[str, Definition] = {
    "quiet": Definition(("-q", "--quiet"), "No progress bars or informational logs on stderr.", {"is_flag": True}),
    "format": Definition(("--format", "fmt"), "stdout format:", {"default": "table", "show_default": True},
                         tuple(FORMATS)),
    "output": Definition(("--output", "-o"), "Where the data goes:"),
    "ffmpeg": Definition(("--ffmpeg",), "The ffmpeg binary to run: encodes, VMAF, display scaling (default: ffmpeg "
                                        "on PATH for encodes, imageio-ffmpeg's static build, which has libvmaf, for "
                                        "VMAF).", {"type": click.Path(dir_okay=False)}),
    "frames": Definition(("--frames",), "Frames taken from each input, spread uniformly:",
                         {"type": click.IntRange(1)}),
    "weights": Definition(("--weights",), "The model: a model card (.json) or CONTRIQUE checkpoint (default: the "
                                          "built-in model).", {"type": click.Path(dir_okay=False)}),
    "threads": Definition(("--threads",), "CPU threads (default: all cores).", {"type": click.IntRange(1, 1024)}),
    "device": Definition(("--device",), "Run the network on the CPU or the first CUDA GPU.",
                         {"type": click.Choice(["cpu", "cuda"]), "default": "cpu", "show_default": True},
                         ("cpu", "cuda")),
    "precision": Definition(("--precision",), "Compute precision:", {"default": "auto", "show_default": True},
                            tuple(PRECISIONS)),
    "resume": Definition(("--resume",), "Continue an interrupted run from what -o/--output holds:", {"is_flag": True}),
    "workers": Definition(("--workers",), "Worker processes:", {"type": click.IntRange(0, 1024)}),
    "head": Definition(("--head",), "Head name or JSON file (default: the model card's)."),
    "mos": Definition(("--mos",), "MOS CSV (columns image,mos)", {"type": click.Path(dir_okay=False)}),
    "cache": Definition(("--cache",), "Features cache, reused when it matches:"),
    "crop": Definition(("--crop",), "Side in pixels of the square crops", {"show_default": True}),
    "types": Definition(("--types",), "Distortion types, comma-separated"),
    "splits": Definition(("--splits",), "Random 80/20 splits the SRCC/PLCC medians are taken over.",
                         {"type": click.IntRange(1, 1000), "default": 10, "show_default": True}),
    "name": Definition(("--name",), "Head name"),
    "reference": Definition(("--reference",), "Also measure VMAF (libvmaf, full reference) against REF:",
                            {"type": click.Path(exists=True, dir_okay=False), "metavar": "REF"}),
    "display": Definition(("--display",), "The display size the pictures are scored at, e.g. 1920x1080:",
                          {"metavar": "WxH"}),
    "vmaf": Definition(("--vmaf", "with_vmaf"), "Also measure libvmaf against INPUT:", {"is_flag": True}),
}


def shared(key: str, detail: str = "", choices: tuple[str, ...] | None = None, **attrs):
    """The option ``key`` of :data:`SHARED` for one command: its meaning, then ``detail`` (what it holds in this
    command, this command's default); ``choices`` from the definition's vocabulary; ``attrs`` (``dest``, the
    argument's name; required, a callback, a file or folder type) are this command's."""
    d = SHARED[key]
    dest = attrs.pop("dest", None)
    options = {**d.attrs, **attrs}
    if choices is not None or d.vocabulary:
        chosen = tuple(choices or d.vocabulary)
        if set(chosen) - set(d.vocabulary):
            raise ValueError(f"{d.decls[0]}: {set(chosen) - set(d.vocabulary)} are not in its vocabulary")
        options["type"] = (FormatChoice if key == "format" else click.Choice)(chosen)
        if key == "format":
            detail = "; ".join(f"{c}: {FORMATS[c]}" for c in chosen) + (f". {detail}" if detail else ".")
    return click.option(*d.decls, *([dest] if dest else []), cls=SharedOption, definition=key, meaning=d.meaning,
                        vocabulary=d.vocabulary, help=f"{d.meaning} {detail}".strip(), **options)
