"""Scoring inputs one after another in this process, with one model: the executor behind a plain ``score``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from contrique_video.decode.sampler import Sampling
from contrique_video.errors import ContriqueError
from contrique_video.runs.inputs import shorten, time_limit
from contrique_video.runs.records import Outcome

if TYPE_CHECKING:
    from contrique_video.api import Scorer
    from contrique_video.runs.settings import ScorerSettings


class LocalExecutor:
    """Inputs in order, each with a progress bar of its frames (``[i/N] name``) that is gone before it is reported.

    ``--timeout`` is SIGALRM (:func:`~contrique_video.runs.inputs.time_limit`), so it must run in the main thread.
    """

    def __init__(self, scorer: Scorer | ScorerSettings | None = None):
        from contrique_video.api import Scorer
        from contrique_video.runs.settings import ScorerSettings

        self.scorer = scorer if isinstance(scorer, Scorer) else (scorer or ScorerSettings()).resolved().scorer()

    def run(self, inputs: list[tuple[int, str]], *, sampling: Sampling, decoder: str, timeout: float | None,
            progress: bool, display: tuple[int, int] | None = None) -> Iterator[Outcome]:
        for n, (index, name) in enumerate(inputs, 1):
            bars: list[tqdm] = []  # created once the input is open and its frame count known
            desc = f"[{n}/{len(inputs)}] {shorten(Path(name).name, 30, keep_end=False)}"

            def on_open(total: int | None, desc=desc, bars=bars) -> None:
                bars.append(tqdm(desc=desc, total=total, unit="frame", disable=not progress, file=sys.stderr,
                                 dynamic_ncols=True, leave=False))

            began = time.perf_counter()
            try:
                with time_limit(timeout):
                    result = self.scorer.score(name, sampling=sampling, decoder=decoder, on_open=on_open,
                                               on_frames=lambda rows, bars=bars: bars[0].update(len(rows)),
                                               display=display)
                outcome = Outcome(index, name, result, seconds=time.perf_counter() - began)
            except ContriqueError as exc:
                outcome = Outcome(index, name, error=str(exc))
            finally:  # the bar goes before anything is printed, so no line is glued to it
                for bar in bars:
                    bar.close()
            yield outcome

