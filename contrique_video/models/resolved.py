"""A model resolved once, as torchvision's weights entries keep weights, transforms and metadata together.

:func:`contrique_video.models.resolve_model` reads the card and checks the weights' SHA-256 once; the
:class:`ResolvedModel` it returns is what the Scorer, the backends and their caches are given, so no layer reads
the card, hashes the weights or works out the preprocessing again. It is ``os.PathLike`` (the file it was
resolved from), so functions taking a model's path take it too.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contrique_video.errors import ModelError
from contrique_video.files import sha256_file
from contrique_video.models.card import ModelCard, card_digest, checked_weights, is_card, load_card_model, read_card
from contrique_video.models.transforms import TwoScale

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, eq=False)
class ResolvedModel:
    """A card (or a bare CONTRIQUE checkpoint, or an ONNX export) with its checked weights file."""

    path: Path  # what was named: a card, a checkpoint (.pt/.tar) or an ONNX export (.onnx)
    card: ModelCard | None
    weights: Path  # the weights file, checked against the card's SHA-256 when it records one

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> ResolvedModel:
        """Read ``path``'s card and check its weights (a one-line :class:`ModelError` when they are missing or
        another file); a checkpoint or an export must exist."""
        path = Path(path)
        if is_card(path):
            card = read_card(path)
            return cls(path, card, checked_weights(card))
        if not path.is_file():
            raise ModelError(f"weights file not found: {path}")
        return cls(path, None, path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def id(self) -> str:
        """How results name the model: a card's id, else ``weights:<file name>``."""
        return self.card.id if self.card else f"weights:{self.path.name}"

    @property
    def label(self) -> str:
        """How logs name the model: a card's id, else the file's name."""
        return self.card.id if self.card else self.path.name

    @property
    def is_onnx(self) -> bool:
        return self.path.suffix.lower() == ".onnx"

    @property
    def preprocess(self) -> TwoScale:
        """The card's preprocessing; a checkpoint or an export gets the CONTRIQUE one."""
        return self.card.preprocess if self.card else TwoScale()

    @property
    def feature_layout(self) -> str | None:
        """The layout id heads are matched by; None for a bare checkpoint (heads are then matched by width)."""
        return self.card.feature_layout if self.card else None

    @property
    def precisions(self) -> dict:
        """The card's measured accuracy per ``"backend precision"`` (what ``auto`` may run); empty without a card."""
        return self.card.precisions if self.card else {}

    @functools.cached_property
    def digest(self) -> str:
        """16 hex digits naming the model in caches (:func:`~contrique_video.models.card.model_digest`), computed
        once per resolved model."""
        if self.card:
            return card_digest(self.card, self.weights)
        return sha256_file(self.path, remember=True)[:16]

    def load(self) -> nn.Module:
        """The one-scale encoder module (N x 3 x H x W in [0, 1] -> N x ``feature_dim``); the weights are not
        hashed again."""
        if self.card:
            return load_card_model(self.card, self.weights)
        from contrique_video.models.contrique import load_weights, read_state_dict  # torch loads here

        try:
            return load_weights(self.path)
        except ModelError:
            if "_conv_stem.weight" in read_state_dict(self.path):
                raise ModelError(f"{self.path.name} holds EfficientNet-Lite weights: pass a model card (JSON naming "
                                 f"the weights, arch, variant and layout) as --weights") from None
            raise


__all__ = ["ResolvedModel"]
