"""User-facing errors: the CLI prints these as one line and exits non-zero, never a traceback."""


class ContriqueError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""

    exit_code = 1


class InputError(ContriqueError):
    """A media file, image folder or table that cannot be used."""


class ModelError(ContriqueError):
    """A checkpoint or head that does not match what was expected."""


class UnsupportedError(ContriqueError):
    """An optional backend, decoder or device that is not available here."""


class EncodeError(ContriqueError):
    """An encoder or an external ffmpeg that failed; results finished before it are kept and marked partial."""


class UsageError(ContriqueError, ValueError):
    """Arguments that cannot work as given (an output that would be lost, an optional package an output needs
    and this install lacks): refused before any work, exit 2 as the CLI's other usage errors."""

    exit_code = 2
