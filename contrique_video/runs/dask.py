"""Scoring catalogues on a Dask cluster: the same per-file records as local runs, one model per worker process.

    >>> from contrique_video.runs.dask import score_distributed
    >>> for record in score_distributed(paths, "tcp://scheduler:8786"):   # or "local": processes on this machine
    ...     print(record["file"], record.get("score", record.get("error")))

Why Dask: it is pure Python (about 25 MB installed), a local cluster starts in seconds, and it plugs into
clusters people already run (``dask scheduler``/``dask worker``, dask-jobqueue on Slurm/PBS, dask-kubernetes,
dask-cuda for one worker per GPU). We schedule nothing ourselves: each input is one Dask task.

- **Model once per worker.** A task loads the :class:`~contrique_video.api.Scorer` into a per-process cache on
  first use; later tasks on that worker reuse it. Plain tasks (not actors) are used so that Dask reschedules
  the work of a worker that dies.
- **Whole files, not segments.** Decoding has no seeking yet and frame indices count from the file start, so a
  segment would decode from the start anyway; each file is one task.
- **Failures are records.** An input a worker cannot read gives ``{"file": ..., "error": ...}``, as locally. A
  worker that dies has its task rerun elsewhere; an input that kills workers ``allowed-failures`` times (Dask's
  setting, 3 by default) becomes a failure record. A model or head that cannot load stops the run with one
  error, since every input would fail the same way.
- **GPUs.** With ``device="auto"`` (the CLI default with ``--engine``) a worker uses its GPU when PyTorch sees
  one. Workers that advertise a ``GPU`` resource (``dask worker --resources GPU=1``, or ``dask cuda worker``
  with it) then get every task, one at a time per GPU, so there is one model replica per GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from contrique_video import __version__
from contrique_video.decode.sampler import Sampling
from contrique_video.errors import (
    ContriqueError,
    InputError,
    ModelError,
    UnsupportedError,
)
from contrique_video.runs.records import join_warnings

log = logging.getLogger("contrique_video")

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before giving up with one line
WORKER_WAIT = 120.0  # seconds to wait for a first worker on a scheduler that has none
PARQUET_COLUMNS = ["file", "score", "frames_scored", "mean", "harmonic_mean", "min", "max", "median", "p5", "std",
                   "model", "head", "scale", "higher_is_better", "sampling", "backend", "hdr", "warnings", "error"]


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


def _scorer(options: dict):
    """The process's Scorer for these options, loaded on first use (the model loads once per worker)."""
    from contrique_video.api import Scorer

    key = repr(sorted(options.items(), key=lambda kv: kv[0]))
    if key not in _SCORERS:
        opts = dict(options)
        if opts.get("device", "auto") == "auto":
            import torch

            opts["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if not opts.get("threads"):
            with contextlib.suppress(ValueError, AttributeError):
                from distributed import get_worker

                opts["threads"] = get_worker().state.nthreads
        try:
            scorer = Scorer(**opts)
            scorer.check_head()
        except ContriqueError:
            raise
        except Exception as exc:  # a bug or a broken install on this worker, not a bad input
            raise ModelError(f"loading the model on a worker failed: {type(exc).__name__}: {_one_line(exc)}") from None
        _SCORERS[key] = scorer
    return _SCORERS[key]


def task_options(scorer_options: dict | None) -> dict:
    """Scorer options as workers get them: ``device`` "auto" unless given; local weights and head paths made
    absolute, since workers run in other folders."""
    options = {"device": "auto", **(scorer_options or {})}
    for key in ("weights", "head"):
        value = options.get(key)
        if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
            options[key] = os.path.abspath(value)
    return options


def load_model(options: dict) -> str:
    """Load the model on a worker ahead of the first task (``client.run(load_model, task_options(...))``)."""
    with _LOCK:
        return _scorer(options).backend.describe()


def _score_task(name: str, path: str, sampling: Sampling, decoder: str, options: dict, timeout: float | None):
    """One input on a worker: its VideoScore, or a failure record. Model errors are raised (they end the run)."""
    from contrique_video.runs.inputs import TimedOut

    with _LOCK:
        scorer = _scorer(options)
        deadline = time.monotonic() + timeout if timeout else None

        def check_time(_=None) -> None:  # SIGALRM works in a main thread only; tasks run in worker threads
            if deadline is not None and time.monotonic() > deadline:
                raise TimedOut(f"{path}: timed out after {timeout:g} s (--timeout)")

        try:
            result = scorer.score(path, sampling=sampling, decoder=decoder, on_frames=check_time, on_open=check_time)
        except ContriqueError as exc:
            return {"file": name, "error": str(exc).replace(path, name)}
        except Exception as exc:  # a decoder bug on one file must not lose the rest of the run
            return {"file": name, "error": f"{name}: {type(exc).__name__}: {_one_line(exc)}".replace(path, name)}
        result.file = name
        return result


# --------------------------------------------------------------------------- client side


def score_results(
    paths: Iterable[str | os.PathLike],
    address: str = "local",
    *,
    sampling: Sampling = Sampling(),
    decoder: str = "pyav",
    scorer_options: dict | None = None,
    timeout: float | None = None,
    workers: int | None = None,
    ordered: bool = False,
) -> Iterator[tuple[str, object]]:
    """Yield ``(name, VideoScore | failure record)`` per input, as each finishes (``ordered``: in input order).

    Only a bounded window of inputs is in flight, so a catalogue of any length uses little memory on the
    scheduler and here. ``scorer_options`` are :class:`~contrique_video.api.Scorer` arguments; ``device`` defaults
    to ``"auto"`` (the worker's GPU if it has one).
    """
    names = [str(p) for p in paths]
    options = task_options(scorer_options)
    if not names:
        return
    with connect(address, workers) as client:  # first: it says how to install Dask if it is missing
        from distributed import as_completed
        from distributed.client import FutureCancelledError

        try:
            from distributed import KilledWorker
        except ImportError:  # older releases
            from distributed.scheduler import KilledWorker

        resources = _check_workers(client)
        run = uuid.uuid4().hex[:8]
        todo = iter(enumerate(names))
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
                future = client.submit(_score_task, name, path, sampling, decoder, options, timeout,
                                       key=f"contrique-score-{run}-{i}", priority=-i, resources=resources or None,
                                       pure=False)
                meta[future.key] = (i, name)
                running.add(future)

        fill()
        held: dict[int, tuple[str, object]] = {}
        next_index = 0
        try:
            for future in running:
                i, name = meta.pop(future.key)
                try:
                    outcome = future.result()
                except KilledWorker:
                    outcome = {"file": name, "error": f"{name}: Dask workers died while scoring it, on every retry "
                                                      "(see the worker logs)"}
                except FutureCancelledError:
                    raise EngineError("the Dask scheduler cancelled the run (did it restart or go away?); "
                                      "finished records are kept") from None
                finally:
                    future.release()
                fill()
                if not ordered:
                    yield name, outcome
                    continue
                held[i] = (name, outcome)
                while next_index in held:
                    yield held.pop(next_index)
                    next_index += 1
        finally:
            running.clear()  # stop what is still queued when the caller stops early or an error ends the run


def score_distributed(paths: Iterable[str | os.PathLike], address: str = "local", **kwargs) -> Iterator[dict]:
    """Yield one JSON record per input, identical to ``score --format json`` of a local run; see
    :func:`score_results` for the arguments."""
    for _, outcome in score_results(paths, address, **kwargs):
        yield outcome if isinstance(outcome, dict) else outcome.record()


# --------------------------------------------------------------------------- tables


def read_manifest(path: str | os.PathLike) -> list[str]:
    """Inputs listed in a CSV or Parquet file: its ``file`` or ``path`` column (or its only column)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except ImportError:
        raise InputError("a Parquet manifest needs pyarrow: pip install 'contrique-video[parquet]'") from None
    except FileNotFoundError:
        raise InputError(f"no such manifest: {path}") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"manifest {path}: cannot read it as {path.suffix.lstrip('.') or 'CSV'} ({_one_line(exc)})") from None
    column = next((c for c in ("file", "path") if c in table.columns), table.columns[0] if len(table.columns) == 1 else None)
    if column is None:
        raise InputError(f"manifest {path}: needs a 'file' or 'path' column (has {', '.join(map(str, table.columns))})")
    names = [str(v).strip() for v in table[column] if isinstance(v, str) and v.strip()]
    return list(dict.fromkeys(names))


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """A flat table of records (JSON records or ``--output`` CSV rows): one row per input, PARQUET_COLUMNS."""
    rows = []
    for r in records:
        flat = {k: v for k, v in r.items() if k != "pooled"}
        flat.update(r.get("pooled") or {})
        flat["warnings"] = join_warnings(r.get("warnings"))
        rows.append(flat)
    table = pd.DataFrame(rows, columns=PARQUET_COLUMNS)
    for column in ("score", "mean", "harmonic_mean", "min", "max", "median", "p5", "std"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    table["frames_scored"] = pd.to_numeric(table["frames_scored"], errors="coerce").astype("Int64")
    table["higher_is_better"] = table["higher_is_better"].astype("boolean")
    for column in ("file", "model", "head", "scale", "sampling", "backend", "hdr", "warnings", "error"):
        table[column] = table[column].astype("string")
    return table


def read_records(path: str | os.PathLike) -> list[dict]:
    """Records already in an ``--output`` file (NDJSON, or CSV rows with the summary columns)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path, dtype={"file": str, "error": str})
        return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in table.to_dict("records")]
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_parquet(records: Iterable[dict], path: str | os.PathLike) -> Path:
    """Write :func:`records_frame` atomically (beside the target, then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        records_frame(records).to_parquet(tmp, index=False)
    except ImportError:
        tmp.unlink(missing_ok=True)
        raise InputError("--parquet needs pyarrow: pip install 'contrique-video[parquet]'") from None
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- the CLI's run


def run_on_engine(
    names: list[str],
    address: str,
    *,
    workers: int | None,
    sampling: Sampling,
    decoder: str,
    scorer_options: dict,
    timeout: float | None,
    output: str | None,
    resume: bool,
    frames_csv: str | None,
    parquet: str | None,
    keep_results: bool,
    emit: Callable[[object, bool], None],
    fail: Callable[[str], None],
    progress: bool,
) -> tuple[int, list]:
    """``score --engine``: records go to --output as each input finishes, exactly as in a local run.

    Returns the exit code (0, 1 if some input failed, 130 on Ctrl-C, 143 on SIGTERM) and the results kept for a
    table or plot (in input order).
    """
    from tqdm import tqdm

    from contrique_video.runs.inputs import Terminated, sigterm_as_exception
    from contrique_video.runs.records import FrameLog, RecordLog

    records = RecordLog(output, resume) if output else None
    earlier = read_records(output) if parquet and records and records.done else []
    if records and records.done:
        log.info("resuming: %d of %d inputs are already in %s", len(set(names) & records.done), len(names), output)
        names = [n for n in names if n not in records.done]
    frame_log = FrameLog(frames_csv) if frames_csv else None
    order = {n: k for k, n in enumerate(names)}  # records stream as inputs finish; tables come in input order
    finished: list[dict] = []
    kept: list = []
    scored = failures = 0
    bar = tqdm(total=len(names), unit="file", disable=not progress, leave=False, dynamic_ncols=True)
    try:
        with sigterm_as_exception():
            for name, outcome in score_results(names, address, sampling=sampling, decoder=decoder,
                                               scorer_options=scorer_options, timeout=timeout, workers=workers):
                bar.update(1)
                if isinstance(outcome, dict):
                    failures += 1
                    record = outcome
                    fail(record["error"])
                else:
                    scored += 1
                    record = outcome.record()
                    emit(outcome, scored == 1)
                    if frame_log:
                        frame_log.write(name, outcome.frames)
                    if keep_results:
                        kept.append(outcome)
                if records:
                    records.write(record)
                finished.append(record)
    except Terminated:
        fail(f"terminated: {scored} inputs scored before SIGTERM are kept")
        code = 143
    except KeyboardInterrupt:  # the caller still prints the table and plot of what finished
        fail(f"interrupted: {scored} inputs scored before Ctrl-C are kept")
        code = 130
    else:
        code = 1 if failures else 0
    finally:
        bar.close()
        if frame_log:
            frame_log.close(keep=frame_log.rows > 0)
        if records:
            records.close()
        if parquet and (earlier or finished):
            finished.sort(key=lambda r: order.get(r["file"], len(order)))
            write_parquet(earlier + finished, parquet)
    kept.sort(key=lambda r: order[r.file])
    return code, kept


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
