"""Model cards: weights, preprocessing and metadata together, as torchvision's weights entries.

A card is a JSON file naming a plain state_dict beside it and what network it fits (``arch`` and ``variant``,
looked up in the family registry, models/families.py), its feature layout and the weights' SHA-256, checked
before the weights are read. Fields read here::

    {"id": "builtin-v3", "arch": "efficientnet-lite", "variant": "lite2", "layout": "stages-meanstd-quality",
     "feature_dim": 9056, "nss": false, "default_head": "clive-v3",
     "weights": {"file": "builtin-v3.pt", "sha256": "...",
                 "openvino_ir": {"file": "builtin-v3.xml", "sha256": "...", "bin_sha256": "..."}},
     "int8_calibration": "file beside the card (ONNX Runtime's table of activation ranges), optional",
     "precisions": {"openvino bf16": {"srcc_change": ..., "mean_abs_score_change": ..., ...}}}

Everything else (provenance, training, preprocessing notes) is documentation, kept in ``raw`` for reports.
Preprocessing comes with the card from its family (:attr:`ModelCard.preprocess`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from contrique_video.errors import ModelError
from contrique_video.files import sha256_file
from contrique_video.models.families import Family, encoder_for, family_of
from contrique_video.models.layouts import feature_layout
from contrique_video.models.transforms import TwoScale

NSS_FEATURES = 36  # nss.NUM_FEATURES, repeated so that reading a card does not import SciPy


@dataclass(frozen=True)
class ModelCard:
    """What a card says about a model; ``raw`` keeps the whole JSON for reports."""

    id: str
    encoder: str  # a registered encoder name (models/families.py)
    layout: str  # the pooling (models/layouts.py)
    weights: Path
    sha256: str | None
    nss: bool = False
    feature_dim: int | None = None
    default_head: str | None = None
    int8_table: Path | None = None
    openvino_ir: tuple[Path, str, str] | None = None  # the OpenVINO IR shipped with the weights: .xml, its and its .bin's SHA-256
    precisions: dict = field(default_factory=dict, compare=False)  # measured accuracy per "backend precision"
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def family(self) -> str:
        return self.spec.name

    @property
    def spec(self) -> Family:
        """The encoder's family entry (models/families.py)."""
        return family_of(self.encoder)

    @property
    def standardize(self) -> bool:
        """Whether heads z-score the encoder block (see :attr:`Family.standardize`)."""
        return self.spec.standardize

    @property
    def preprocess(self) -> TwoScale:
        return self.spec.preprocess

    @property
    def feature_layout(self) -> str:
        """The layout id heads fit on this model record."""
        return feature_layout(self.encoder, self.layout, self.nss)


def read_card(path: str | os.PathLike) -> ModelCard:
    """Parse and check a card; any problem is one :class:`ModelError` line naming the file. A card is parsed
    once per process while its size and modification time stay the same (a run reads it from several places)."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ModelError(f"model card not found: {path}") from None
    except OSError as exc:
        raise ModelError(f"model card {path} is not readable JSON ({type(exc).__name__})") from None
    return _parse_card(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _parse_card(path: Path, size: int, mtime_ns: int) -> ModelCard:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model card not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"model card {path} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"model card {path} must be a JSON object")
    try:
        encoder = encoder_for(raw.get("arch"), raw.get("variant"))
    except ModelError as exc:
        raise ModelError(f"model card {path}: {exc}") from None
    layouts = family_of(encoder).layouts
    layout = raw.get("layout", layouts[0])
    if layout not in layouts:
        raise ModelError(f"model card {path}: layout {layout!r} is not one of {encoder}'s: {', '.join(layouts)}")
    weights = raw.get("weights")
    if isinstance(weights, str):
        weights = {"file": weights, "sha256": raw.get("weights_sha256")}
    if not isinstance(weights, dict) or not isinstance(weights.get("file"), str):
        raise ModelError(f"model card {path}: 'weights' must name the weights file ({{\"file\": ..., \"sha256\": ...}})")
    sha = weights.get("sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise ModelError(f"model card {path}: weights sha256 must be 64 hex digits")
    ir = _openvino_ir(path, weights.get("openvino_ir"))
    dim = raw.get("feature_dim")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
        raise ModelError(f"model card {path}: feature_dim must be a positive integer")
    table = raw.get("int8_calibration")
    if table is not None and not isinstance(table, str):
        raise ModelError(f"model card {path}: int8_calibration must name a file beside the card")
    precisions = raw.get("precisions", {})
    if not isinstance(precisions, dict):
        raise ModelError(f"model card {path}: precisions must be an object ('backend precision' -> measured accuracy)")
    return ModelCard(id=str(raw.get("id") or path.stem), encoder=encoder, layout=layout,
                     weights=(path.parent / weights["file"]).resolve(), sha256=sha, nss=bool(raw.get("nss", False)),
                     feature_dim=dim, default_head=_head_beside(path, raw.get("default_head")),
                     int8_table=(path.parent / table).resolve() if table else None, openvino_ir=ir,
                     precisions=precisions, raw=raw)


def _openvino_ir(card: Path, entry: object) -> tuple[Path, str, str] | None:
    """The card's ``weights.openvino_ir`` entry (``file``: an ``.xml`` beside the card, its .bin beside it; both
    SHA-256s), or None."""
    if entry is None:
        return None
    hexes = [entry.get(k) for k in ("sha256", "bin_sha256")] if isinstance(entry, dict) else []
    if not (isinstance(entry, dict) and str(entry.get("file", "")).endswith(".xml")
            and all(isinstance(h, str) and len(h) == 64 for h in hexes)):
        raise ModelError(f"model card {card}: weights.openvino_ir must be {{\"file\": \"....xml\", \"sha256\": ..., "
                         f"\"bin_sha256\": ...}} (64 hex digits each)")
    return (card.parent / entry["file"]).resolve(), hexes[0].lower(), hexes[1].lower()


def _head_beside(card: Path, head: object) -> str | None:
    """A default head named by a ``.json`` file is found beside the card (a card wrapping your own checkpoint);
    other names are built-in heads."""
    if head is None:
        return None
    if not isinstance(head, str):
        raise ModelError(f"model card {card}: default_head must be a head name or a .json file beside the card")
    return str((card.parent / head).resolve()) if head.lower().endswith(".json") else head


def is_card(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".json"


def checked_weights(card: ModelCard) -> Path:
    """The card's weights file, refused in one line when missing or when its SHA-256 is not the card's."""
    if not card.weights.is_file():
        raise ModelError(f"model {card.id}: weights file not found: {card.weights}")
    if card.sha256:
        digest = sha256_file(card.weights, remember=True)
        if digest != card.sha256.lower():
            raise ModelError(f"model {card.id}: {card.weights.name} has SHA-256 {digest[:12]}..., not the card's "
                             f"{card.sha256[:12]}...; the file is damaged or not this model's (reinstall it)")
    return card.weights


def checked_ir(card: ModelCard) -> Path | None:
    """The OpenVINO IR the card ships (its ``.xml``; the ``.bin`` beside it), refused in one line when a file is
    missing or its SHA-256 is not the card's (remembered by size and modification time, as the weights'); None
    when the card ships none."""
    if card.openvino_ir is None:
        return None
    xml, *digests = card.openvino_ir
    for path, want in zip((xml, xml.with_suffix(".bin")), digests):
        if not path.is_file():
            raise ModelError(f"model {card.id}: OpenVINO file not found: {path} (reinstall it)")
        digest = sha256_file(path, remember=True)
        if digest != want:
            raise ModelError(f"model {card.id}: {path.name} has SHA-256 {digest[:12]}..., not the card's {want[:12]}...; "
                             "the file is damaged or not this model's (reinstall it)")
    return xml


def model_digest(path: str | os.PathLike) -> str:
    """16 hex digits naming a model in caches: a checkpoint's SHA-256, or for a card :func:`card_digest`."""
    path = Path(path)
    if not is_card(path):
        return sha256_file(path, remember=True)[:16]
    card = read_card(path)
    return card_digest(card, checked_weights(card))


def card_digest(card: ModelCard, weights: Path) -> str:
    """A card's digest, from its already checked ``weights``: the SHA-256 of what defines the network (arch, variant,
    layout) and of its weights, so editing documentation fields keeps the cache."""
    network = json.dumps([card.raw.get("arch"), card.raw.get("variant"), card.layout,
                          card.sha256 or sha256_file(weights, remember=True)])
    return hashlib.sha256(network.encode()).hexdigest()[:16]


def model_label(path: str | os.PathLike) -> str:
    """How logs name a model: a card's id (``builtin-v3``), else the checkpoint's file name."""
    path = Path(path)
    try:
        return read_card(path).id if is_card(path) else path.name
    except ModelError:
        return path.name


def load_card_model(card: ModelCard, weights: Path | None = None):
    """The card's one-scale encoder module; its weights are checked by SHA-256 first unless ``weights`` is the file
    :func:`checked_weights` already returned (a :class:`~contrique_video.models.resolved.ResolvedModel`'s)."""
    from contrique_video.models.contrique import (
        read_state_dict,  # torch loads only when weights are read
    )

    path = weights or checked_weights(card)
    model = card.spec.load(card.encoder, card.layout, read_state_dict(path), path.name)
    if card.feature_dim is not None and 2 * model.feature_dim + NSS_FEATURES * card.nss != card.feature_dim:
        raise ModelError(f"model card {card.id}: feature_dim {card.feature_dim} does not match the network "
                         f"({2 * model.feature_dim} encoder features{' + NSS' if card.nss else ''})")
    return model


__all__ = ["ModelCard", "card_digest", "checked_ir", "checked_weights", "is_card", "load_card_model", "model_digest", "model_label", "read_card"]
