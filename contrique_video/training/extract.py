"""Per-input features for fitting and evaluating heads: a model's, an untrained encoder's, or a classical baseline's.

An input's feature is the mean over its sampled frames (default sampling), the feature ``score`` applies its
head to; for a model it comes from :meth:`contrique_video.api.Scorer.mean_feature`, so fitting and scoring
share one feature path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from contrique_video.decode.sampler import Sampling
from contrique_video.features import Block


@dataclass
class Extractor:
    """``feature(path)`` gives an input's feature row; ``key`` names the features (a cache key, a head's
    ``features``); ``blocks`` is their layout."""

    feature: Callable[[str | os.PathLike], np.ndarray]
    key: str
    blocks: list[Block]


def feature_extractor(weights: str | None = None, random_init: str | None = None, baseline: str | None = None,
                      threads: int | None = None) -> Extractor:
    """Features of a model (``weights``, default the built-in one), an untrained encoder of the ``random_init``
    architecture (seed 0), or a ``baseline`` ("laplacian" or "nss")."""
    if not random_init and not baseline:
        from contrique_video.api import Scorer

        scorer = Scorer(weights=weights, head=None, precision="fp32", threads=threads)  # heads are fit on fp32 features
        return Extractor(scorer.mean_feature, scorer.model_id, scorer.blocks)
    if baseline == "laplacian":
        from contrique_video.training.fit import laplacian_variance

        return Extractor(_mean_over_frames(lambda fs: np.array([[laplacian_variance(f)] for f in fs])), "laplacian",
                         [Block("laplacian", 1, True)])
    if baseline == "nss":
        from contrique_video.models.nss import NUM_FEATURES, nss_features

        return Extractor(_mean_over_frames(lambda fs: np.stack([nss_features(f) for f in fs])), "nss",
                         [Block("nss", NUM_FEATURES, True)])
    import torch

    from contrique_video.backends.pytorch import TorchBackend
    from contrique_video.models.families import create_encoder, family_of

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    family = family_of(random_init)
    backend = TorchBackend(create_encoder(random_init), preprocess=family.preprocess)
    return Extractor(_mean_over_frames(backend), f"random-{random_init}-seed0",
                     [Block(family.block, backend.feature_dim, family.standardize)])


def _mean_over_frames(per_frame: Callable[[list[np.ndarray]], np.ndarray]) -> Callable[[str | os.PathLike], np.ndarray]:
    from contrique_video.decode import open_source

    def feature(path: str | os.PathLike) -> np.ndarray:
        with open_source(path) as src:
            return np.mean([per_frame([f.rgb])[0] for f in src.frames(Sampling())], axis=0)

    return feature


def mos_table(mos: str | os.PathLike, heldout: float | None = None) -> pd.DataFrame:
    """The MOS table, or only the images ``train --holdout heldout`` held out."""
    from contrique_video.training.fit import read_mos
    from contrique_video.training.train import holdout_split

    table = read_mos(mos)
    if heldout:
        held = set(holdout_split(list(table["image"]), heldout)[1])
        table = table[table["image"].isin(held)].reset_index(drop=True)
    return table
