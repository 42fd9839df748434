"""Leaderboard backends: run tasks in this process, a local process pool or Ray, yielding rows
as they finish.

Ray (``backend="ray"``):

- ``address=None`` starts a private local Ray instance with ``workers`` CPUs (``ray.init(
  address="local")``: a cluster already running on the node is left alone); ``address="auto"``
  or ``"HOST:PORT"`` joins a running cluster, whose size is its own (``workers`` then caps the
  number of episodes running at once); a Ray that the caller initialised is used as it is.
- edgeft's own code travels with the job: when edgeft calls ``ray.init``, the job's
  ``runtime_env`` (:func:`ray_runtime_env`) has a ``working_dir`` holding a copy of the running
  ``edgeft`` package as one importable folder, so the nodes need edgeft's dependencies (numpy,
  scipy, gymnasium, cvxpy, ...) but not edgeft itself, and every node runs the driver's code.
  A caller that initialises Ray itself passes ``runtime_env=ray_runtime_env(...)`` to
  ``ray.init`` for the same effect.
- Worker niceness: Ray starts its workers 15 nice levels above its raylet
  (``RAY_worker_niceness``, an increment over the niceness ``ray start`` or ``ray.init`` runs
  at), which starves them on a machine busy with other work. A local instance started here runs
  its workers at ``nice`` (default: this process's own niceness, like the process pool's
  workers), set through ``RAY_worker_niceness`` when the instance starts. On a cluster started
  elsewhere the workers keep the cluster's setting unless ``nice`` is given; then each task sets
  its process's niceness with ``os.nice`` (raising it always works, lowering it needs root or
  CAP_SYS_NICE on the nodes: otherwise start the nodes with ``RAY_worker_niceness=0 ray start
  ...``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

from edgeft.leaderboard.errors import LeaderboardError
from edgeft.leaderboard.tasks import run_task, task_cost

#: the backends :func:`execute` knows
BACKENDS = ("local", "serial", "ray")
#: edgeft's subpackages kept in top-level folders of the source tree and mapped into the package
#: by pyproject.toml's ``[tool.setuptools.package-dir]``; a wheel has them inside ``edgeft/``
MAPPED_SUBPACKAGES = ("envs", "baselines", "agents", "training")
#: what the copy of the package shipped to Ray workers leaves out
_SHIP_IGNORE = ("__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".*")
#: environment variables a Ray job passes on to its workers when the driver has them set
_PASSED_ENV = ("EDGEFT_TRUST_AGENT_CODE",)
#: the environment variable Ray's raylet reads for its workers' niceness
RAY_NICENESS_ENV = "RAY_worker_niceness"


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


def set_niceness(nice: int | None) -> int:
    """Set this process's niceness to ``nice`` (None: leave it); returns the niceness now.

    Raises:
        LeaderboardError: lowering the niceness without the right to (root or CAP_SYS_NICE).
    """
    now = os.nice(0)
    if nice is None or nice == now:
        return now
    try:
        return os.nice(nice - now)
    except PermissionError as err:
        raise LeaderboardError(
            f"--ray-nice {nice}: a Ray worker runs at nice {now} and lowering it needs root or "
            f"CAP_SYS_NICE on its node; start the nodes with {RAY_NICENESS_ENV}={nice} ray start "
            "... instead, or leave out --ray-nice"
        ) from err


def _ray_task(task: dict[str, Any], nice: int | None, cwd: str | None = None) -> dict[str, Any]:
    """One task on a Ray worker: the requested niceness, the driver's folder ``cwd`` where the
    node has it (relative ``ALGO:PATH`` agent paths then mean what they mean to the driver; Ray
    starts its workers in the job's ``working_dir``), one torch thread, the episode."""
    set_niceness(nice)
    if cwd is not None and os.path.isdir(cwd):
        os.chdir(cwd)
    return _torch_one_thread(task)


def check_nice(nice: int | None) -> int | None:
    """``nice`` as an int from -20 to 19, or None.

    Raises:
        ValueError: anything else (the message names ``--ray-nice`` and the range).
    """
    if nice is None:
        return None
    if isinstance(nice, bool) or not isinstance(nice, int) or not -20 <= nice <= 19:
        raise ValueError(
            f"--ray-nice must be a whole number from -20 to 19 (got {nice!r}): the "
            "niceness of the Ray workers (higher runs at lower priority)"
        )
    return nice


def stage_package(dest: str | os.PathLike) -> Path:
    """Copy the running ``edgeft`` package into ``dest/edgeft`` as one importable folder.

    An editable install of the source tree maps the top-level folders ``envs/``, ``baselines/``,
    ``agents/`` and ``training/`` into the package (:data:`MAPPED_SUBPACKAGES`); the copy puts
    them inside it, so ``dest`` on ``sys.path`` is enough to ``import edgeft.envs`` where edgeft
    is not installed. Package data (suites' tables, shipped agents, channel traces) is copied,
    caches are not.

    Returns:
        ``dest/edgeft``.
    """
    import edgeft

    root = Path(edgeft.__file__).resolve().parent
    target = Path(dest) / "edgeft"
    ignore = shutil.ignore_patterns(*_SHIP_IGNORE)
    shutil.copytree(root, target, ignore=ignore)
    for name in MAPPED_SUBPACKAGES:
        spec = importlib.util.find_spec(f"edgeft.{name}")
        if spec is None or not spec.submodule_search_locations:
            raise LeaderboardError(f"cannot find the package edgeft.{name} to ship to Ray")
        src = Path(list(spec.submodule_search_locations)[0]).resolve()
        if src != (root / name).resolve():  # mapped in from elsewhere (an editable install)
            shutil.copytree(src, target / name, ignore=ignore)
    return target


def ray_runtime_env(
    ship_dir: str | os.PathLike | None = None, env_vars: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``runtime_env`` of a leaderboard's Ray job.

    Args:
        ship_dir: a folder made by :func:`stage_package`'s ``dest`` (it holds ``edgeft/``),
            shipped as the job's ``working_dir``: Ray copies it to every node, puts it first on
            the workers' ``sys.path`` and starts them in it (a driver's own folder, which Ray
            would otherwise put first, is then left out). None: the nodes' installed edgeft.
        env_vars: extra environment variables for the workers (``EDGEFT_TRUST_AGENT_CODE`` is
            passed on when this process has it set).

    Example:
        ``ray.init(address="auto", runtime_env=ray_runtime_env(stage_package(d).parent))``
        (keep ``d`` until ``ray.init`` returns) before ``run_leaderboard(..., backend="ray")``.
    """
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.update(env_vars or {})
    out: dict[str, Any] = {}
    if ship_dir is not None:
        out["working_dir"] = str(ship_dir)
    if env:
        out["env_vars"] = env
    return out


def _end_workers(pool: Any) -> None:
    """Stop a process pool's workers now (running episodes are abandoned, not waited for)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


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


def execute(
    tasks: list[dict[str, Any]],
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    *,
    ray_nice: int | None = None,
    ship_code: bool = True,
) -> Generator[dict[str, Any], None, None]:
    """Run ``tasks``, costliest first (:func:`~edgeft.leaderboard.tasks.task_cost`); yields
    result rows as they finish (in completion order).

    Args:
        backend: "local" (process pool), "serial" (this process) or "ray".
        workers: pool size (default: all CPUs); 1 = serial. With Ray: the CPUs of the local
            instance started here, or on a cluster the most tasks running at once (default: as
            many as the cluster runs).
        address: Ray cluster address (``"auto"``, ``"HOST:PORT"``); None = a local Ray instance
            started here, or the one the caller already initialised.
        ray_nice: the Ray workers' niceness (module docstring); None: as the process pool's on
            a local instance, the cluster's own setting on a cluster.
        ship_code: ship this edgeft to the Ray workers (:func:`ray_runtime_env`); False: the
            nodes' installed edgeft.
    """
    tasks = sorted(tasks, key=task_cost, reverse=True)  # longest first: better load balance
    if backend not in BACKENDS:
        raise LeaderboardError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "ray":
        yield from _execute_ray(tasks, workers, address, check_nice(ray_nice), ship_code)
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
    with ProcessPoolExecutor(
        max_workers=min(n, len(tasks)), mp_context=mp.get_context(method), initializer=_worker_init
    ) as pool:
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


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set while the block runs."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ray_init(
    ray: Any, workers: int | None, address: str | None, nice: int | None, ship_code: bool
) -> None:
    """``ray.init`` for a leaderboard: a private local instance or a cluster joined, with the
    job's ``runtime_env`` (edgeft shipped from a temporary copy, uploaded by ``ray.init``)."""
    with tempfile.TemporaryDirectory(prefix="edgeft-ray-") as tmp:
        ship = stage_package(tmp).parent if ship_code else None
        kw: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "runtime_env": ray_runtime_env(ship),
        }
        if address:  # the cluster's own size and worker niceness
            ray.init(address=address, **kw)
            return
        # a private instance (a cluster already running on this node is not joined: it
        # refuses num_cpus); its raylet, started at this process's niceness, adds
        # RAY_worker_niceness to it for its workers
        increment = 0 if nice is None else nice - os.nice(0)
        with _environ(**{RAY_NICENESS_ENV: str(increment)}):
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, **kw)


def _ray_result(ray: Any, ref: Any) -> dict[str, Any]:
    """The row of a finished Ray task; a task's LeaderboardError as one line, no traceback."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, LeaderboardError):
            raise LeaderboardError(str(err.cause)) from None
        raise


def _execute_ray(
    tasks: list[dict[str, Any]],
    workers: int | None,
    address: str | None,
    nice: int | None,
    ship_code: bool,
) -> Generator[dict[str, Any], None, None]:
    try:
        import ray
    except ImportError as err:
        raise LeaderboardError("--backend ray needs Ray: pip install 'edgeft[ray]'") from err
    started = False
    if not ray.is_initialized():
        _ray_init(ray, workers, address, nice, ship_code)
        started = True
    remote = ray.remote(num_cpus=1)(_ray_task)
    # the most tasks in flight: all of them (Ray queues them in this order), or ``workers``
    limit = len(tasks) if workers is None else workers
    queue = iter(tasks)
    cwd = os.getcwd()
    pending: list[Any] = []
    finished = False
    try:
        for t in queue:
            pending.append(remote.remote(t, nice, cwd))
            if len(pending) >= limit:
                break
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                row = _ray_result(ray, ref)
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append(remote.remote(nxt, nice, cwd))
                yield row
        finished = True
    finally:
        if not finished:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
