"""Quality bands of the built-in head's 0-100 MOS scale (README, Quality bands): CLIVE's slider words at equal steps.

Kept apart from the report so the CLI's table can name bands without loading matplotlib.
"""

from __future__ import annotations

BANDS = [(0, 20, "bad"), (20, 40, "poor"), (40, 60, "fair"), (60, 80, "good"), (80, 100, "excellent")]
BAND_LEGEND = "band: <20 bad, 20-40 poor, 40-60 fair, 60-80 good, >=80 excellent"


def band(score: float) -> str:
    """The quality band a 0-100 score reads as (``bad`` .. ``excellent``)."""
    return next((name for _, hi, name in BANDS if score < hi), BANDS[-1][2])
