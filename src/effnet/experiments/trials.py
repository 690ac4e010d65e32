"""Run many independent trials (train this candidate, score that spec) in parallel, and never lose one.

The grid search of compound scaling and the architecture search both evaluate a list of
candidates. This module runs `fn(params)` for each candidate: in this process, on a pool of
local worker processes, or as Ray tasks on a cluster. Every finished trial is written to a
`TrialStore` at once (atomically), so a killed run resumes without losing or redoing a
finished trial. A failing candidate (out of memory, NaN loss, a bug) is recorded as failed and
the others go on.

Workers end with their parent, even when it is killed with SIGKILL (`die_with_parent`), and an
interrupted run stops the trials still running instead of waiting for them.

Why Ray core and not Ray Tune: a trial here is one function call with a dict in and a dict out,
and the search strategy (not a tuner) decides what runs next; `ray.remote` tasks are all we
need, and the same store and resume logic serve the local and the Ray executors.

`Experiment` is the skeleton the experiment drivers (the grid search, the scaling study, the
architecture search) run on: open the store by identity, run trials, record them, write the
results atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet._io import atomic_write_text
from effnet._lock import DirectoryLock, lock_directory
from effnet.experiments.saved_options import save_options
from effnet.experiments.trial_store import STATE_FILE, Trial, TrialsError, TrialStore

__all__ = ["Experiment", "Trial", "TrialStore", "TrialsError", "die_with_parent", "evaluator_name", "ray_session", "run_trials"]


def evaluator_name(fn: Callable[..., Any]) -> str:
    """How an experiment's identity names its trial function: module and qualified name."""
    return f"{fn.__module__}.{fn.__qualname__}"


# ------------------------------------------------------------------ the experiment skeleton
@dataclass
class Experiment:
    """One run of an experiment driver (grid search, scaling study, architecture search), on one skeleton:

    1. `Experiment.open`: check the run directory (a new run must not overwrite one; a resume must find
       one), open its `TrialStore` by identity (another experiment's store is refused), save the options;
    2. `run`: evaluate trials, skipping those already in the store, each stored as it finishes;
    3. the driver records the trials on its own objects (candidates, points, a strategy's history);
    4. `write`: results and reports, each file atomically.

    Without a directory (`out_dir` None) it runs in memory: no store, no files.
    """

    out_dir: Path | None
    store: TrialStore | None = None
    workers: int = 1
    ray_address: str | None = None
    threads_per_worker: int | None = None
    lock: DirectoryLock | None = field(default=None, repr=False, compare=False)  # held while the experiment object lives

    @classmethod
    def open(
        cls,
        out_dir: str | Path | None,
        identity: dict[str, Any],
        *,
        what: str,
        resume: bool = False,
        markers: Sequence[str] = (STATE_FILE,),
        options: dict[str, Any] | None = None,
        workers: int = 1,
        ray_address: str | None = None,
        threads_per_worker: int | None = None,
    ) -> Experiment:
        """Open (`resume`) or start the experiment `what` (e.g. "grid search") in `out_dir`.

        `markers` are the files whose presence means the directory holds such an experiment;
        `options` (the command line's, from `effnet.cli.resume`) are saved there as options.json.
        Raises TrialsError when the directory does not fit: a run there and no `resume`, no run
        there to resume, or a run of another identity; `effnet._lock.DirectoryInUse` while another
        process holds it. The directory stays locked while the Experiment (or a copy) lives; workers
        never take the lock (they write nothing there).
        """
        if out_dir is None:
            return cls(None, None, workers, ray_address, threads_per_worker)
        from effnet.train.distributed import is_main_process  # torch: imported when an experiment opens

        out = Path(out_dir)
        lock = lock_directory(out, what, main_process=is_main_process())
        try:
            present = [out / name for name in markers if (out / name).exists()]
            if present and not resume:
                raise TrialsError(f"{out} already holds a {what} ({present[0]}); pass --resume to continue it or choose another --out-dir")
            if resume and not present:
                raise TrialsError(f"--resume: {out} holds no {what} to continue (no {markers[0]}); drop --resume to start one")
            store = TrialStore(out, identity)
            save_options(out, options)
        except BaseException:
            lock.release()
            raise
        return cls(out, store, workers, ray_address, threads_per_worker, lock)

    def stored(self, items: Sequence[tuple[str, dict[str, Any]]]) -> set[str]:
        """The keys of `items` whose trials are already in the store (finished by an earlier run)."""
        return {key for key, _ in items if self.store is not None and key in self.store}

    def run(
        self,
        fn: Callable[[dict[str, Any]], dict[str, Any]],
        items: Sequence[tuple[str, dict[str, Any]]],
        *,
        progress: str | None = None,
        on_trial: Callable[[Trial], None] | None = None,
    ) -> dict[str, Trial]:
        """`run_trials` with this experiment's store and executor; the finished trials by key, in items order."""
        trials = run_trials(
            fn,
            items,
            workers=self.workers,
            ray_address=self.ray_address,
            store=self.store,
            threads_per_worker=self.threads_per_worker,
            progress=progress,
            on_trial=on_trial,
        )
        return {t.key: t for t in trials}

    def write(self, name: str, text: str) -> None:
        """Write a result file into the run directory, atomically (nothing in memory-only runs)."""
        if self.out_dir is not None:
            atomic_write_text(self.out_dir / name, text)


# ------------------------------------------------------------------ running one trial
def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def _call(fn: Callable[[dict[str, Any]], dict[str, Any]], key: str, params: dict[str, Any], index: int, threads: int | None) -> Trial:
    """Run fn(params) and turn its outcome, exception included, into a Trial (runs inside the worker)."""
    if threads is not None:
        _set_threads(threads)
    start = time.perf_counter()
    try:
        result = fn(params)
        if not isinstance(result, dict):
            raise TypeError(f"a trial function must return a dict, got {type(result).__name__}")
        result = json.loads(json.dumps(result))  # must be JSON-able: fail here, not when saving
        return Trial(key, params, "ok", result, "", time.perf_counter() - start, index)
    except Exception as err:  # noqa: BLE001 - any failure of a candidate is recorded, the search goes on
        text = f"{type(err).__name__}: {err}"
        tail = traceback.format_exc(limit=3).strip().splitlines()[-3:]
        return Trial(key, params, "failed", {}, text + "\n" + "\n".join(tail), time.perf_counter() - start, index)


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Torch threads for trials run in this process, restored afterwards (later work must not inherit them)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    _set_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


# ------------------------------------------------------------------ executors
def run_trials(
    fn: Callable[[dict[str, Any]], dict[str, Any]],
    items: Sequence[tuple[str, dict[str, Any]]],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    store: TrialStore | None = None,
    threads_per_worker: int | None = None,
    progress: str | None = "trials",
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Evaluate `fn(params)` for every `(key, params)` whose key is not already in `store`.

    - ``workers == 1`` and no Ray: runs here, in order (closures are fine).
    - ``workers > 1``: a pool of spawned processes; `fn` must be a module-level function.
    - ``ray_address``: Ray tasks; ``"local"`` starts a Ray runtime on this machine with
      `workers` CPUs, anything else goes to ``ray.init(address=...)``.

    Each worker uses `threads_per_worker` torch threads (default: CPUs // workers). A failing
    trial is recorded with status "failed". Every finished trial is stored at once and given to
    `on_trial`. Returns one Trial per item, in items order; duplicate keys run once.
    """
    if workers < 1:
        raise TrialsError(f"workers must be >= 1, got {workers}")
    keys = [key for key, _ in items]
    done: dict[str, Trial] = {}
    todo: list[tuple[str, dict[str, Any], int]] = []
    queued: set[str] = set()
    for index, (key, params) in enumerate(items):
        if key in done or key in queued:
            continue
        stored = store.get(key) if store is not None else None
        if stored is not None:
            done[key] = stored
        else:
            todo.append((key, params, index))
            queued.add(key)
    bar = _progress_bar(progress, len(set(keys)), len(done))

    def finished(trial: Trial) -> None:
        done[trial.key] = trial
        if store is not None:
            store.add(trial)
        if bar is not None:
            bar.update(1)
            best = max((t.result.get("score", float("nan")) for t in done.values() if t.ok and "score" in t.result), default=None)
            bar.set_postfix_str(f"failed {sum(not t.ok for t in done.values())}" + (f", best score {best:.4g}" if best is not None else ""))
        if on_trial is not None:
            on_trial(trial)

    threads = threads_per_worker if threads_per_worker is not None else _default_threads(workers)
    try:
        if ray_address:
            _run_ray(fn, todo, workers, ray_address, threads, finished)
        elif workers == 1:
            with _threads(threads_per_worker):
                for key, params, index in todo:
                    finished(_call(fn, key, params, index, None))
        else:
            _run_pool(fn, todo, workers, threads, finished)
    finally:
        if bar is not None:
            bar.close()
    return [done[key] for key in dict.fromkeys(keys)]


def _progress_bar(label: str | None, total: int, initial: int) -> Any:
    if not label:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="trial", dynamic_ncols=True)


def _run_pool(fn: Callable, todo: list[tuple[str, dict[str, Any], int]], workers: int, threads: int, finished: Callable[[Trial], None]) -> None:
    import multiprocessing

    # spawn, not fork: forking a process that has torch threads running can deadlock
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),))
    pending: dict[Future, tuple[str, dict[str, Any], int]] = {}
    try:
        pending = {pool.submit(_call, fn, key, params, index, threads): (key, params, index) for key, params, index in todo}
        while pending:
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                key, params, index = pending.pop(future)
                try:
                    trial = future.result()
                except Exception as err:  # noqa: BLE001 - a worker that died (killed, out of memory) fails its trial only
                    trial = Trial(key, params, "failed", {}, f"worker process failed: {type(err).__name__}: {err}", 0.0, index)
                finished(trial)
    except BaseException:
        # interrupted (Ctrl-C, SIGTERM turned into an exception, a failing callback): stop the running trials
        # now instead of waiting for them, which can take hours
        for future in pending:
            future.cancel()
        _terminate_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.terminate()


# ------------------------------------------------------------------ workers that die with their parent
PR_SET_PDEATHSIG = 1  # from linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when process `parent` dies, even by SIGKILL (then nothing else can stop it).

    On Linux the kernel sends the worker SIGKILL when its parent exits (prctl PR_SET_PDEATHSIG);
    elsewhere, or where that call fails, a daemon thread polls the parent's pid every second. A
    parent that died before this ran is caught by the first check.
    """
    if not _parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent,), name="effnet-parent-watch", daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _parent_death_signal() -> bool:
    """Ask the kernel for SIGKILL on the parent's death; False where that is not available (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


@contextlib.contextmanager
def ray_session(address: str | None, workers: int = 1) -> Iterator[None]:
    """Keep one Ray runtime up for a block of `run_trials` calls (a search runs one batch per call).

    Does nothing without an address or when Ray is already initialised. ``"local"`` starts a
    runtime on this machine with `workers` CPUs; anything else connects to that cluster.
    """
    if not address:
        yield
        return
    try:
        import ray
    except ImportError:
        raise TrialsError("--ray-address needs Ray: pip install 'effnet[ray]' (or pip install ray)") from None
    if ray.is_initialized():
        yield
        return
    if address == "local":
        # workers see this process's import path, so functions from scripts and tests unpickle there too
        path = os.pathsep.join(p for p in sys.path if p)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as err:  # noqa: BLE001 - Ray raises several types for an unreachable head
            raise TrialsError(f"cannot connect to the Ray cluster at {address!r}: {err}; start one with `ray start --head` or pass 'local'") from None
    try:
        yield
    finally:
        ray.shutdown()


def _run_ray(fn: Callable, todo: list[tuple[str, dict[str, Any], int]], workers: int, address: str, threads: int, finished: Callable[[Trial], None]) -> None:
    with ray_session(address, workers):
        import ray

        # Ray hides the GPUs from a task that asks for none (CUDA_VISIBLE_DEVICES=""): each trial asks for an equal
        # share of the cluster's GPUs, so `workers` trials train side by side on them
        gpus = ray.cluster_resources().get("GPU", 0)
        remote = ray.remote(num_cpus=1, num_gpus=min(1.0, gpus / workers) if gpus else 0, max_retries=0)(_call)
        pending = {remote.remote(fn, key, params, index, threads): (key, params, index) for key, params, index in todo}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    key, params, index = pending.pop(ref)
                    try:
                        trial = ray.get(ref)
                    except Exception as err:  # noqa: BLE001 - a lost worker or node fails its trial only
                        trial = Trial(key, params, "failed", {}, f"Ray task failed: {type(err).__name__}: {err}", 0.0, index)
                    finished(trial)
        finally:
            # the driver stops (interrupted, or a callback failed): its tasks must not go on using the cluster.
            # A driver killed outright is Ray's to clean up: it ends the tasks of a job whose driver is gone.
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
