"""The layout of a model's feature vector, which inference owns and head fitting reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """A run of feature columns with its own Ridge: learned features raw (as the paper), classical ones z-scored."""

    name: str
    size: int
    standardize: bool = False
