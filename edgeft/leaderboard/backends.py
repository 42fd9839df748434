"""Leaderboard backends: run tasks in this process, a local process pool or Ray, yielding rows
as they finish."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Generator, Iterator
from typing import Any

from edgeft.leaderboard.errors import LeaderboardError
from edgeft.leaderboard.tasks import run_task, task_cost


def _worker_init() -> None:
    # Ctrl-C reaches every process of the terminal's group: the main process stops the run and
    # ends the workers, which must not each print a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _torch_one_thread(task: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    return run_task(task)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while worker processes start (they inherit it; no start-up race)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _end_workers(pool: Any) -> None:
    """Stop a process pool's workers now (running episodes are abandoned, not waited for)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def execute(tasks: list[dict[str, Any]], backend: str = "local", workers: int | None = None,
            address: str | None = None) -> Generator[dict[str, Any], None, None]:
    """Run ``tasks``; yields result rows as they finish (in completion order).

    Args:
        backend: "local" (process pool), "serial" (this process) or "ray".
        workers: pool size (default: all CPUs); 1 = serial.
        address: Ray cluster address (``ray.init(address=...)``); None = a local Ray instance,
            or the one already initialised.
    """
    tasks = sorted(tasks, key=task_cost, reverse=True)  # longest first: better load balance
    if backend not in ("local", "serial", "ray"):
        raise LeaderboardError(f"unknown backend {backend!r}; known: local, serial, ray")
    if backend == "ray":
        yield from _execute_ray(tasks, workers, address)
        return
    n = workers or os.cpu_count() or 1
    if backend == "serial" or n == 1 or len(tasks) <= 1:
        for t in tasks:
            yield run_task(t)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # fork is fast and needs no `if __name__ == "__main__"` guard in the caller's script; once
    # torch is loaded (a trained agent was checked) forking is unsafe, so spawn then
    method = "spawn" if "torch" in sys.modules else "fork"
    with ProcessPoolExecutor(max_workers=min(n, len(tasks)), mp_context=mp.get_context(method),
                             initializer=_worker_init) as pool:
        with _sigint_ignored():
            pending = {pool.submit(run_task, t) for t in tasks}
        finished = False
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
            finished = True
        finally:
            if not finished:  # Ctrl-C, a failed episode, or the caller stopped early: the
                # pool marks the episodes not run as failed (cancelling them first would make
                # its manager thread trip over the cancelled futures, a traceback)
                _end_workers(pool)


def _execute_ray(tasks: list[dict[str, Any]], workers: int | None, address: str | None
                 ) -> Generator[dict[str, Any], None, None]:
    try:
        import ray
    except ImportError as err:
        raise LeaderboardError("--backend ray needs Ray: pip install 'edgeft[ray]'") from err
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kw["address"] = address
        else:
            kw["num_cpus"] = workers or os.cpu_count() or 1
        ray.init(**kw)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(_torch_one_thread)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()

