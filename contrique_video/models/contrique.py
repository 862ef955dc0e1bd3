"""The CONTRIQUE network: a torchvision-layout ResNet trunk plus the contrastive projector.

The module names reproduce the official checkpoint exactly (``encoder.0`` conv1, ``encoder.1`` bn1,
``encoder.4``..``encoder.7`` layer1..layer4, ``projector.0/1/3/4``) so that
``CONTRIQUE_checkpoint25.tar`` loads strictly. torchvision is not a dependency: its PyPI wheels do not
import beside the CPU torch build this project installs, and the trunk is a few dozen lines.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contrique_video.errors import ModelError
from contrique_video.models.trainee import Trainee

ARCHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def resnet_trunk(arch: str = "resnet50", zero_init_residual: bool = False) -> nn.Sequential:
    """ResNet without avgpool and fc, as ``nn.Sequential(*resnet.children())[:-2]`` in torchvision.

    Initialised like torchvision; ``zero_init_residual`` zeroes each residual branch's last BN, the
    standard trick that makes from-scratch training stable (``train`` uses it).
    """
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    kind, depths = ARCHS[arch]
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    inplanes = 64
    for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
        stride = 1 if i == 0 else 2
        blocks = []
        for j in range(depth):
            s = stride if j == 0 else 1
            downsample = None
            if s != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * block.expansion, 1, s, bias=False),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            blocks.append(block(inplanes, planes, s, downsample))
            inplanes = planes * block.expansion
        layers.append(nn.Sequential(*blocks))
    trunk = nn.Sequential(*layers)
    for m in trunk.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    for m in trunk.modules() if zero_init_residual else ():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)
        elif isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)
    return trunk


def projector(n: int, projection_dim: int) -> nn.Sequential:
    """The official training-only projector (Linear-BN-ReLU-Linear-BN) on an ``n``-wide pooled feature."""
    return nn.Sequential(
        nn.Linear(n, n, bias=False),
        nn.BatchNorm1d(n),
        nn.ReLU(),
        nn.Linear(n, projection_dim, bias=False),
        nn.BatchNorm1d(projection_dim),
    )


class Contrique(Trainee):
    """Encoder + projector. ``forward`` returns the inference feature of one scale: GAP, then L2 norm."""

    layout = "contrique"  # the feature layout (models/layouts.py): GAP, then L2 norm

    def __init__(self, arch: str = "resnet50", projection_dim: int = 128, zero_init_residual: bool = False):
        super().__init__()
        self.arch = self.encoder_name = arch
        self.encoder = resnet_trunk(arch, zero_init_residual)
        self.projector = projector(self.feature_dim, projection_dim)

    @property
    def feature_dim(self) -> int:
        kind, _ = ARCHS[self.arch]
        return 2048 if kind == "bottleneck" else 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x).mean(dim=(2, 3))
        return F.normalize(h.float(), dim=1)


def arch_of(state: dict[str, torch.Tensor]) -> str:
    """Infer the ResNet variant from a plain state_dict's keys, so checkpoints need no wrapper."""
    bottleneck = "encoder.4.0.conv3.weight" in state
    depths = tuple(
        len({k.split(".")[2] for k in state if k.startswith(f"encoder.{i}.") and k.split(".")[2].isdigit()})
        for i in range(4, 8)
    )
    for name, (kind, d) in ARCHS.items():
        if d == depths and (kind == "bottleneck") == bottleneck:
            return name
    raise ModelError(f"checkpoint is not a CONTRIQUE ResNet (found blocks per stage {depths})")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state_dict of tensors, read without unpickling anything else (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or non-torch files
        raise ModelError(f"cannot read weights {path}: not a PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"weights {path} are not a plain state_dict of tensors")
    return state


def load_weights(path: str | Path) -> Contrique:
    """Load a CONTRIQUE checkpoint (a plain state_dict, the official format) strictly and safely."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    return from_state(read_state_dict(path), str(path))


def from_state(state: dict[str, torch.Tensor], source: str, arch: str | None = None) -> Contrique:
    """The network for a state_dict read from ``source``; ``arch`` (a card's) must be the one its keys say."""
    found = arch_of(state)
    if arch is not None and found != arch:
        raise ModelError(f"{source} holds a {found}, not the {arch} its model card says")
    model = Contrique(found)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    # The projector only serves training; a checkpoint may leave it out (the built-in one does, to stay small).
    # Then every key must be an encoder key: anything else is reported by the strict load below.
    target: nn.Module = model
    if not any(k.startswith("projector.") for k in state) and all(k.startswith("encoder.") for k in state):
        target, state = model.encoder, {k.removeprefix("encoder."): v for k, v in state.items()}
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise ModelError(f"weights {source} do not match the CONTRIQUE layout: {first[:300]}") from None
    return model.eval()
