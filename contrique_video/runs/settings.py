"""Which model, head and encoder path score a run: one typed, picklable value, not a dict of Scorer arguments.

``score``'s options make one (``contrique_video.cli.options.model_options``). :meth:`ScorerSettings.resolved`
reads the card, checks the weights' SHA-256 and reads the head once, at the top; the resolved model
(:class:`~contrique_video.models.ResolvedModel`) and head travel down as they are, to this process's
:class:`~contrique_video.api.Scorer` or pickled to every Dask worker, so no layer reads the card, hashes the
weights or finds the head file again, and a relative path does not depend on a worker's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from contrique_video.api import DEFAULT_MAX_PIXELS, Scorer, builtin_model, card_default_head
from contrique_video.models import ResolvedModel, resolve_model
from contrique_video.models.head import LinearHead, resolve_head


@dataclass(frozen=True)
class ScorerSettings:
    """:class:`~contrique_video.api.Scorer`'s arguments, typed. ``weights=None``: the built-in model; ``head=None``:
    the model's default head; ``backend=None``: $CONTRIQUE_VIDEO_BACKEND, else ``"auto"``; ``device="auto"``: a
    Dask worker's GPU if it has one (a worker's thread count when ``threads`` is None)."""

    weights: str | os.PathLike | ResolvedModel | None = None
    head: str | os.PathLike | LinearHead | None = None
    device: str = "cpu"
    backend: str | None = None
    precision: str = "auto"
    batch_size: int = 4
    threads: int | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def resolved(self) -> ScorerSettings:
        """The same settings with the model resolved and the head read (None when the model names no default and
        none was given: the Scorer then says what to pass)."""
        if isinstance(self.weights, ResolvedModel):
            model = self.weights
        else:
            model = builtin_model() if self.weights is None else resolve_model(_absolute(self.weights))
        head = self.head if self.head is not None else card_default_head(model.card)
        if head is not None and not isinstance(head, LinearHead):
            head = resolve_head(_absolute(head))
        return replace(self, weights=model, head=head)

    def scorer(self) -> Scorer:
        """A Scorer with these settings (resolve them first to read the model once for several)."""
        return Scorer(weights=self.weights, head=self.head, device=self.device, backend=self.backend,
                      precision=self.precision, batch_size=self.batch_size, threads=self.threads,
                      max_pixels=self.max_pixels)


def _absolute(path: str | os.PathLike) -> str | os.PathLike:
    """A file's absolute path (a worker runs in another folder); a name (``builtin-v3``, ``clive``) as it is."""
    return os.path.abspath(path) if Path(path).is_file() else path


__all__ = ["ScorerSettings"]
