"""Encoder families, as timm's ``create_model``: an encoder name (``resnet50``, ``efficientnet-lite2``) to a network.

A :class:`Family` says which encoders it has (and how a model card spells each: ``arch``, ``variant``), which
feature layouts (poolings) it offers, how to build and load its one-scale module, the preprocessing its cards
get, whether heads z-score its features, whether int8 is refused, and how ``train`` builds it (its trainee).
Adding a family is a module with its network and one :func:`register_family` call (below, or in that module);
nothing outside ``models/`` changes: ``list_encoders``, cards, scoring, ``train --arch`` and ``evaluate
--random-init`` read this registry. Networks are imported on first use, so reading a card does not load torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrique_video.errors import InputError, ModelError
from contrique_video.models.layouts import LITE_LAYOUTS
from contrique_video.models.transforms import TwoScale

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Family:
    """One encoder family. ``build(encoder, layout)`` makes an untrained one-scale module (N x 3 x H x W in [0, 1]
    to N x D); ``load(encoder, layout, state, source)`` makes it from a plain state_dict, strictly, and names
    ``source`` in its one-line errors. Both modules carry ``encoder_name`` and ``layout`` attributes."""

    name: str
    encoders: dict[str, tuple[str, str | None]]  # encoder name -> (card "arch", card "variant")
    layouts: tuple[str, ...]  # the first is a card's default
    build: Callable[[str, str], nn.Module]
    load: Callable[[str, str, dict[str, torch.Tensor], str], nn.Module]
    standardize: bool  # whether heads z-score these features (layouts mixing scales of very different spread)
    no_int8: str | None = None  # why int8 is refused for this family, or None when it is offered
    preprocess: TwoScale = field(default_factory=TwoScale)
    block: str = "encoder"  # the name of its feature block in heads (the paper's ResNets: "contrique")
    #: ``trainee(encoder, cfg)``: the network ``train`` trains from ``cfg`` (a training.train.TrainConfig: ``init``
    #: is None, a weights file or "imagenet"), a module with ``encoder`` (frames to a feature map), ``projector``
    #: and ``feature_dim`` whose ``forward`` gives one scale's scoring feature; None: not trainable here.
    trainee: Callable[[str, Any], nn.Module] | None = None


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family; an encoder name may belong to one family only."""
    taken = {e for f in FAMILIES.values() for e in f.encoders} & set(family.encoders)
    if taken:
        raise ValueError(f"encoders {', '.join(sorted(taken))} are registered already")
    FAMILIES[family.name] = family
    return family


def list_encoders() -> list[str]:
    return [e for f in FAMILIES.values() for e in f.encoders]


def trainable_encoders() -> list[str]:
    """The encoders ``train --arch`` offers: those of families with a trainee."""
    return [e for f in FAMILIES.values() if f.trainee is not None for e in f.encoders]


def create_trainee(encoder: str, cfg: Any) -> nn.Module:
    """The network ``train`` trains for ``encoder`` (its family's trainee), or a one-line error listing the
    trainable ones."""
    family = family_of(encoder) if encoder in list_encoders() else None
    if family is None or family.trainee is None:
        raise InputError(f"unknown architecture {encoder!r}; choose one of {', '.join(trainable_encoders())}")
    return family.trainee(encoder, cfg)


def family_of(encoder: str) -> Family:
    for family in FAMILIES.values():
        if encoder in family.encoders:
            return family
    raise ModelError(f"unknown encoder {encoder!r}; known: {', '.join(list_encoders())}")


def encoder_for(arch: object, variant: object) -> str:
    """The encoder a card's ``arch`` and ``variant`` name, or a one-line error listing what they may be."""
    for family in FAMILIES.values():
        for encoder, spelled in family.encoders.items():
            if spelled == (arch, variant):
                return encoder
    known = ", ".join(f"{a}" + (f" variant {v}" if v else "") for f in FAMILIES.values() for a, v in f.encoders.values())
    raise ModelError(f"unknown arch {arch!r}" + (f" variant {variant!r}" if variant else "") + f"; known: {known}")


def create_encoder(name: str, layout: str | None = None) -> nn.Module:
    """An untrained one-scale encoder module by name, pooled by ``layout`` (the family's default when None)."""
    family = family_of(name)
    layout = layout or family.layouts[0]
    if layout not in family.layouts:
        raise ModelError(f"layout {layout!r} is not one of {name}'s: {', '.join(family.layouts)}")
    return family.build(name, layout)


def _resnet_build(encoder: str, layout: str) -> nn.Module:
    from contrique_video.models.contrique import Contrique

    return Contrique(encoder)


def _resnet_load(encoder: str, layout: str, state: dict, source: str) -> nn.Module:
    from contrique_video.models.contrique import from_state

    return from_state(state, source, encoder)


def _resnet_trainee(encoder: str, cfg: Any) -> nn.Module:
    """A CONTRIQUE ResNet with zero-initialised residual branches, or fine-tuned from ``cfg.init`` weights."""
    from contrique_video.models.contrique import Contrique, load_weights

    if cfg.freeze_stages:
        raise InputError("--freeze-stages is only for the efficientnet-lite architectures")
    if cfg.init == "imagenet":
        raise InputError(f"--init imagenet is only for the efficientnet-lite architectures, not {encoder}")
    model = Contrique(encoder, zero_init_residual=True)
    if cfg.init:  # fine-tune from a checkpoint (e.g. the built-in model) instead of random weights
        init = load_weights(cfg.init)
        if init.arch != encoder:
            raise InputError(f"--init {cfg.init} is a {init.arch}, not a {encoder}")
        model.encoder.load_state_dict(init.encoder.state_dict())
    return model


def _lite_trainee(encoder: str, cfg: Any) -> nn.Module:
    """A Lite trunk from ImageNet (``cfg.init == "imagenet"``), a trunk state_dict or random, with the projector
    on ``cfg.lite_map``."""
    import torch

    from contrique_video.models.efficientnet_lite import EfficientNetLite, LiteTrainee, load_imagenet

    variant = encoder.removeprefix("efficientnet-")
    if cfg.init == "imagenet":
        trunk = load_imagenet(variant)
    else:
        trunk = EfficientNetLite(variant)
        if cfg.init:
            if not Path(cfg.init).is_file():
                raise InputError(f"--init weights not found: {cfg.init}")
            state = torch.load(cfg.init, map_location="cpu", weights_only=True)
            try:
                trunk.load_state_dict(state, strict=True)
            except (RuntimeError, AttributeError):
                raise InputError(f"--init {cfg.init} is not an EfficientNet-{variant} trunk state_dict") from None
    return LiteTrainee(trunk, lite_map=cfg.lite_map)


def _lite_build(encoder: str, layout: str) -> nn.Module:
    """An untrained Lite module; the ``quality`` layouts get ``QualityBranch``'s default shape (width 64, stage 2)."""
    from contrique_video.models.efficientnet_lite import (
        EfficientNetLite,
        LayoutFeatures,
    )
    from contrique_video.models.quality_branch import QualityBranch

    trunk = EfficientNetLite(encoder.removeprefix("efficientnet-"))
    branch = QualityBranch(trunk.channels[1]) if layout.endswith("quality") else None
    return LayoutFeatures(trunk, layout, branch)


def _lite_load(encoder: str, layout: str, state: dict, source: str) -> nn.Module:
    from contrique_video.models.efficientnet_lite import from_state

    return from_state(state, source, encoder.removeprefix("efficientnet-"), layout)


register_family(Family(
    "resnet", {a: (a, None) for a in ("resnet18", "resnet34", "resnet50")}, ("contrique",),
    _resnet_build, _resnet_load, standardize=False, block="contrique",  # GAP then L2 norm, as the paper's
    trainee=_resnet_trainee,
))
register_family(Family(
    "efficientnet-lite", {f"efficientnet-{v}": ("efficientnet-lite", v) for v in ("lite0", "lite1", "lite2")},
    LITE_LAYOUTS, _lite_build, _lite_load, standardize=True, trainee=_lite_trainee,
    no_int8="static int8 moved EfficientNet-Lite2's features by 11% (relative L2; ResNet-50: 5.5%), too far for "
            "its head; run it at fp32",
))

__all__ = ["FAMILIES", "Family", "create_encoder", "create_trainee", "encoder_for", "family_of", "list_encoders",
           "register_family", "trainable_encoders"]
