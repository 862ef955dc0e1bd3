"""Feature layouts: how an encoder's feature maps become one vector per frame, and what a head is matched by.

A model's *feature layout* names the encoder, its pooling and any extra block, e.g.
``efficientnet-lite2/stages-meanstd`` or ``resnet50/contrique+nss``; its features are ``[full | half]`` scale
(models/transforms.py), then the extra block. A head records the layout it was fit on and is refused on a model
of another layout (:meth:`~contrique_video.models.head.LinearHead.check_fits`): two models of one layout give
features a head can read alike, whatever their names, except where the layout carries a trained branch.
"""

from __future__ import annotations

#: Poolings and what they mean, for model cards.
LAYOUTS = {
    "contrique": "global average pool of the last ResNet map, then L2 norm (the CONTRIQUE paper's)",
    "last": "spatial mean of the last feature map",
    "stages-meanstd": "spatial mean and standard deviation of every stage's output and the last map",
    "quality": "spatial mean and standard deviation of a trained quality branch on an early stage's map",
    "stages-meanstd-quality": "stages-meanstd, then the quality branch's mean and standard deviation",
}
#: EfficientNet-Lite's layouts. The ``quality`` ones carry a trained branch (models/quality_branch.py); their name
#: says where the branch sits, not which training run made it, so a head on them is matched by model as well
#: (:func:`has_trained_branch`).
LITE_LAYOUTS = ("last", "stages-meanstd", "quality", "stages-meanstd-quality")
NSS_SUFFIX = "+nss"  # the 36 NSS features after the encoder's


def has_trained_branch(layout: str) -> bool:
    """Whether a layout id (``<encoder>/<layout>[+nss]``) carries a trained quality branch, whose features belong to
    one training run: a head fit on them reads only that model's."""
    return layout.partition("/")[2].removesuffix(NSS_SUFFIX) in ("quality", "stages-meanstd-quality")


def feature_layout(encoder: str, layout: str, nss: bool = False) -> str:
    """The layout id heads record: ``<encoder>/<layout>``, plus ``+nss`` when NSS features follow."""
    return f"{encoder}/{layout}{NSS_SUFFIX if nss else ''}"


__all__ = ["LAYOUTS", "LITE_LAYOUTS", "NSS_SUFFIX", "feature_layout", "has_trained_branch"]
