"""Scoring catalogues on a Dask cluster: the same per-file records as local runs, one model per worker process.

    >>> import contrique_video as cv
    >>> for outcome in cv.score_many(paths, executor="tcp://scheduler:8786"):   # or "local": processes here
    ...     print(outcome.record())

Why Dask: it is pure Python (about 25 MB installed), a local cluster starts in seconds, and it plugs into
clusters people already run (``dask scheduler``/``dask worker``, dask-jobqueue on Slurm/PBS, dask-kubernetes,
dask-cuda for one worker per GPU). We schedule nothing ourselves: each input is one Dask task.

- **Model once per worker.** A task loads the :class:`~contrique_video.api.Scorer` into a per-process cache on
  first use; later tasks on that worker reuse it. Plain tasks (not actors) are used so that Dask reschedules
  the work of a worker that dies.
- **Whole files, not segments.** Decoding has no seeking yet and frame indices count from the file start, so a
  segment would decode from the start anyway; each file is one task.
- **Failures are outcomes.** An input a worker cannot read gives its one-line error, as locally. A
  worker that dies has its task rerun elsewhere; an input that kills workers ``allowed-failures`` times (Dask's
  setting, 3 by default) becomes a failure record. A model or head that cannot load stops the run with one
  error, since every input would fail the same way.
- **GPUs.** With ``device="auto"`` (the CLI default with ``--engine``) a worker uses its GPU when PyTorch sees
  one. Workers that advertise a ``GPU`` resource (``dask worker --resources GPU=1``, or ``dask cuda worker``
  with it) then get every task, one at a time per GPU, so there is one model replica per GPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from contrique_video import __version__
from contrique_video.decode.sampler import Sampling
from contrique_video.errors import ContriqueError, ModelError, UnsupportedError
from contrique_video.runs.records import Outcome
from contrique_video.runs.settings import ScorerSettings

log = logging.getLogger("contrique_video")

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before giving up with one line
WORKER_WAIT = 120.0  # seconds to wait for a first worker on a scheduler that has none


class EngineError(ContriqueError):
    """The cluster cannot be reached, has no workers, or went away during the run."""


# --------------------------------------------------------------------------- engine


@contextlib.contextmanager
def connect(address: str, workers: int | None = None) -> Iterator:
    """A Dask client for ``address``: ``local`` (worker processes on 127.0.0.1, one thread each), a scheduler
    address such as ``tcp://host:8786``, or a scheduler file (``.json``, as dask-jobqueue and dask-mpi write)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UnsupportedError("--engine needs Dask: pip install 'contrique-video[dask]'") from None
    # Dask's own INFO lines (cluster start and stop) would drown ours; its warnings, e.g. a worker that died, stay.
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger("distributed").level))
    nanny = logging.getLogger("distributed.nanny")
    if _nanny_messages not in nanny.filters:
        nanny.addFilter(_nanny_messages)
    if address == "local":
        n = workers or os.cpu_count() or 1
        log.info("starting a local Dask cluster: %d worker processes, 1 thread each", n)
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
            yield client
        return
    if workers:
        log.warning("--workers applies to --engine local only; the cluster at %s keeps its workers", address)
    kwargs = {"scheduler_file": address} if address.endswith(".json") else {"address": address}
    if "scheduler_file" in kwargs and not Path(address).is_file():
        raise EngineError(f"scheduler file {address} does not exist")
    try:
        client = Client(**kwargs, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise EngineError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT:g} s "
                          f"({_one_line(exc)}); is it running, and is this its address (tcp://HOST:8786)?") from None
    with client:
        if not client.scheduler_info().get("workers"):
            log.info("the scheduler at %s has no workers yet; waiting up to %g s", address, WORKER_WAIT)
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT)
            except TimeoutError:
                raise EngineError(f"the Dask scheduler at {address} has no workers (waited {WORKER_WAIT:g} s)") from None
        yield client


def _nanny_messages(record: logging.LogRecord) -> bool:
    """Say what a local worker's death means for the run; drop the note about a worker slow to exit at the end
    (PyTorch's exit takes more than Dask's 4 s)."""
    text = record.getMessage()
    if text.startswith("Restarting worker"):
        record.msg, record.args = ("a Dask worker process died; it is being restarted, and the input it was "
                                   "scoring will be scored again"), ()
    return "still alive after" not in text


def _check_workers(client) -> dict:
    """Every worker must import this package at the same version; returns ``resources`` for our tasks."""
    try:
        versions = client.run(_worker_version)
    except ImportError as exc:
        raise EngineError(f"a Dask worker cannot import contrique_video ({_one_line(exc)}); install it on every "
                          "worker") from None
    other = {addr: v for addr, v in versions.items() if v != __version__}
    if other:
        log.warning("workers run other contrique-video versions than %s here: %s", __version__, other)
    workers = client.scheduler_info()["workers"].values()
    if any(w.get("resources", {}).get("GPU") for w in workers):
        log.info("workers advertise GPUs: one task per GPU at a time")
        return {"GPU": 1}
    return {}


def _worker_version() -> str:
    return __version__


# --------------------------------------------------------------------------- worker side

_SCORERS: dict[str, object] = {}
_LOCK = threading.Lock()  # one model replica per process, used by one task at a time (threads > 1 share it)


def _scorer(settings: ScorerSettings):
    """The process's Scorer for these settings, loaded on first use (the model loads once per worker)."""
    key = hashlib.sha256(pickle.dumps(settings)).hexdigest()  # each task brings its own unpickled copy
    if key not in _SCORERS:
        if settings.device == "auto":
            import torch

            settings = replace(settings, device="cuda" if torch.cuda.is_available() else "cpu")
        if not settings.threads:
            with contextlib.suppress(ValueError, AttributeError):
                from distributed import get_worker

                settings = replace(settings, threads=get_worker().state.nthreads)
        try:
            scorer = settings.scorer()
            scorer.check_head()
        except ContriqueError:
            raise
        except Exception as exc:  # a bug or a broken install on this worker, not a bad input
            raise ModelError(f"loading the model on a worker failed: {type(exc).__name__}: {_one_line(exc)}") from None
        _SCORERS[key] = scorer
    return _SCORERS[key]


def task_settings(settings: ScorerSettings | None) -> ScorerSettings:
    """Settings as workers get them: resolved here, once (the card read, the weights checked, the head read), so
    workers load what was checked; no settings: the built-in model on each worker's GPU if it has one."""
    return (settings or ScorerSettings(device="auto")).resolved()


def load_model(settings: ScorerSettings) -> str:
    """Load the model on a worker ahead of the first task (``client.run(load_model, task_settings(...))``)."""
    with _LOCK:
        return _scorer(settings).backend.describe()


def _score_task(name: str, path: str, sampling: Sampling, decoder: str, settings: ScorerSettings,
                timeout: float | None, display: tuple[int, int] | None = None):
    """One input on a worker: its VideoScore, or its error line. Model errors are raised (they end the run)."""
    from contrique_video.runs.inputs import TimedOut

    with _LOCK:
        scorer = _scorer(settings)
        deadline = time.monotonic() + timeout if timeout else None

        def check_time(_=None) -> None:  # SIGALRM works in a main thread only; tasks run in worker threads
            if deadline is not None and time.monotonic() > deadline:
                raise TimedOut(f"{path}: timed out after {timeout:g} s (--timeout)")

        try:
            result = scorer.score(path, sampling=sampling, decoder=decoder, on_frames=check_time, on_open=check_time,
                                  display=display)
        except ContriqueError as exc:
            return str(exc).replace(path, name)
        except Exception as exc:  # a decoder bug on one file must not lose the rest of the run
            return f"{name}: {type(exc).__name__}: {_one_line(exc)}".replace(path, name)
        result.file = name
        return result


# --------------------------------------------------------------------------- client side


class DaskExecutor:
    """Each input is one task on the cluster at ``address`` (see :func:`connect`); outcomes come as tasks finish.

    Only a bounded window of inputs is in flight, so a catalogue of any length uses little memory on the
    scheduler and here. ``settings`` (:class:`~contrique_video.runs.settings.ScorerSettings`) are resolved once, here
    (see :func:`task_settings`). ``workers`` sizes ``address="local"``.
    """

    def __init__(self, address: str = "local", workers: int | None = None, settings: ScorerSettings | None = None):
        self.address, self.workers, self.settings = address, workers, task_settings(settings)

    def run(self, inputs: list[tuple[int, str]], *, sampling: Sampling, decoder: str, timeout: float | None,
            progress: bool, display: tuple[int, int] | None = None) -> Iterator[Outcome]:
        if not inputs:
            return
        with connect(self.address, self.workers) as client:  # first: it says how to install Dask if it is missing
            bar = tqdm(total=len(inputs), unit="file", disable=not progress, leave=False, dynamic_ncols=True)
            try:
                for outcome in self._outcomes(client, inputs, sampling, decoder, timeout, display):
                    bar.update(1)
                    yield outcome
            finally:
                bar.close()

    def _outcomes(self, client, inputs, sampling, decoder, timeout, display) -> Iterator[Outcome]:
        from distributed import as_completed
        from distributed.client import FutureCancelledError

        try:
            from distributed import KilledWorker
        except ImportError:  # older releases
            from distributed.scheduler import KilledWorker

        resources = _check_workers(client)
        run = uuid.uuid4().hex[:8]
        todo = iter(inputs)
        meta: dict = {}
        running = as_completed()
        capacity = [0, 0]  # in-flight limit, completions since it was last asked for

        def fill() -> None:
            """Keep about two inputs per worker thread in flight; the cluster may grow or shrink meanwhile."""
            if capacity[1] % 100 == 0:
                capacity[0] = max(4, 2 * sum(client.nthreads().values()))
            capacity[1] += 1
            for _ in range(max(0, capacity[0] - running.count())):
                item = next(todo, None)
                if item is None:
                    return
                i, name = item
                path = os.path.abspath(name) if not os.path.isabs(name) and os.path.exists(name) else name
                future = client.submit(_score_task, name, path, sampling, decoder, self.settings, timeout, display,
                                       key=f"contrique-score-{run}-{i}", priority=-i, resources=resources or None,
                                       pure=False)
                meta[future.key] = item
                running.add(future)

        fill()
        try:
            for future in running:
                i, name = meta.pop(future.key)
                try:
                    outcome = future.result()
                except KilledWorker:
                    outcome = f"{name}: Dask workers died while scoring it, on every retry (see the worker logs)"
                except FutureCancelledError:
                    raise EngineError("the Dask scheduler cancelled the run (did it restart or go away?); "
                                      "finished records are kept") from None
                finally:
                    future.release()
                fill()
                yield Outcome(i, name, error=outcome) if isinstance(outcome, str) else Outcome(i, name, outcome)
        finally:
            running.clear()  # stop what is still queued when the caller stops early or an error ends the run


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
