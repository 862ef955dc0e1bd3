"""Models: cards (weights + preprocessing + metadata), encoder families, feature layouts and linear heads.

    >>> from contrique_video import models
    >>> models.list_models()                 # the built-in cards' ids
    >>> card = models.get_card("builtin-v3")  # or a path to a card
    >>> net = models.load_model("builtin-v3")  # one-scale encoder module, weights checked by SHA-256

A name is a built-in card's id; a path is a card (``.json``) or, for :func:`load_model`, a CONTRIQUE ResNet
checkpoint (``.pt``/``.tar``, the official plain state_dict, whose keys say the architecture). Networks and
torch load on first use, so importing this package stays light.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from contrique_video.errors import ModelError
from contrique_video.models.card import ModelCard, is_card, read_card
from contrique_video.models.families import create_encoder, family_of, list_encoders
from contrique_video.models.layouts import feature_layout
from contrique_video.models.resolved import ResolvedModel

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def builtin_cards() -> dict[str, Path]:
    """The cards shipped in ``assets/``: id -> path."""
    cards = {}
    for path in sorted(ASSETS.glob("*.json")):
        try:
            cards[str(json.loads(path.read_text()).get("id") or path.stem)] = path
        except (OSError, ValueError, AttributeError):
            continue  # a damaged asset surfaces when it is used by path, with read_card's error
    return cards


def list_models() -> list[str]:
    """Ids of the built-in models, for ``load_model`` and ``--weights``."""
    return list(builtin_cards())


def model_path(name_or_path: str | os.PathLike) -> Path:
    """A built-in model's card for its id; any other value as a path."""
    return builtin_cards().get(os.fspath(name_or_path), Path(name_or_path))


def get_card(name_or_path: str | os.PathLike) -> ModelCard:
    """The card of a built-in model (by id) or of a card file; a one-line error naming the known ids otherwise."""
    path = model_path(name_or_path)
    if not is_card(path):
        raise ModelError(f"{name_or_path} is neither a built-in model ({', '.join(list_models()) or 'none'}) "
                         f"nor a model card (.json)")
    return read_card(path)


def resolve_model(name_or_path: str | os.PathLike | ResolvedModel) -> ResolvedModel:
    """A built-in model's id, a card or a checkpoint, resolved once: the card read and the weights checked (see
    :mod:`contrique_video.models.resolved`); a :class:`ResolvedModel` is returned as it is."""
    if isinstance(name_or_path, ResolvedModel):
        return name_or_path
    return ResolvedModel.from_path(model_path(name_or_path))


def load_model(name_or_path: str | os.PathLike | ResolvedModel):
    """The one-scale encoder module (N x 3 x H x W in [0, 1] -> N x ``feature_dim``) for a built-in model's id,
    a card or a CONTRIQUE checkpoint. Every backend and the ONNX export take this module."""
    return resolve_model(name_or_path).load()


def layout_of(feature_id: str) -> str | None:
    """The feature layout a head's ``features`` id names, for heads written before they recorded one: a built-in
    model's id, or ``<encoder>[-imagenet]/<layout>[+nss]``; None when it names neither (a checkpoint's file)."""
    cards = builtin_cards()
    if feature_id in cards:
        return read_card(cards[feature_id]).feature_layout
    m = re.fullmatch(r"(?P<enc>[\w.-]+?)(?:-imagenet)?/(?P<layout>[\w-]+)(?P<nss>\+nss)?", feature_id)
    if m and m["enc"] in list_encoders() and m["layout"] in family_of(m["enc"]).layouts:
        return feature_layout(m["enc"], m["layout"], bool(m["nss"]))
    return None


__all__ = ["ModelCard", "ResolvedModel", "builtin_cards", "create_encoder", "get_card", "layout_of", "list_encoders",
           "list_models", "load_model", "model_path", "resolve_model"]
