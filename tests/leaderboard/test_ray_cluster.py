"""The leaderboard on a two-node Ray cluster started here (``ray start --head`` and a second
``ray start --address``, one CPU each, on the loopback address, stopped at the end), whose nodes
cannot import edgeft: ``--backend ray --address`` ships it and writes the files the process pool
writes. Needs Ray: pip install 'edgeft[ray]'."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeft import leaderboard as lb
from edgeft import suites
from edgeft.leaderboard import backends
from edgeft.suites import FEDLORA, MEC, Scenario, Suite
from tests.leaderboard.test_leaderboard import deterministic_view

ray = pytest.importorskip("ray", reason="needs Ray: pip install 'edgeft[ray]'")

pytestmark = pytest.mark.slow  # two Ray nodes start and stop: about 1-2 minutes

FL = Suite(
    "cluster-fedlora",
    1,
    "fedlora",
    "test suite",
    (Scenario("k6", FEDLORA, {"num_devices": 6, "episode_rounds": 10}),),
    num_seeds=3,
)
MC = Suite(
    "cluster-mec",
    1,
    "mec",
    "test suite",
    (Scenario("n4", MEC, {"num_users": 4, "num_servers": 2, "episode_rounds": 2}),),
    num_seeds=2,
)
HEAD_NICE = 15  # Ray's default worker niceness, over the niceness ray start runs at
NODE_NICE = 7  # the second node's, set with RAY_worker_niceness when it starts

# Loaded by every Python process of the test cluster (PYTHONPATH): edgeft's editable install is
# hidden, as on a node where edgeft is not installed, and Ray's nodes use the loopback address
# (Ray replaces 127.0.0.1 by the machine's outward address otherwise).
_SITECUSTOMIZE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "edgeft" not in getattr(f, "__module__", "")]
import ray._private.services as _services
_services.node_ip_address_from_perspective = lambda address=None: "127.0.0.1"
"""

# runs on the workers; defined from text so that Ray ships it by value (no test module there)
_PROBE = """
def probe(nice):
    import os, sys
    before = os.nice(0)
    import edgeft, edgeft.envs
    from edgeft.leaderboard import backends
    backends.set_niceness(nice)
    return {"before": before, "after": os.nice(0), "edgeft": edgeft.__file__,
            "envs": edgeft.envs.__file__, "torch": "torch" in sys.modules}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    return shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


def _stop(proc: subprocess.Popen) -> None:
    """Stop a ``ray start --block`` node (it ends the processes it started), then anything
    left in its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node and a second node, one CPU each; yields the address ``127.0.0.1:PORT``."""
    tmp = Path(tempfile.mkdtemp(prefix="edgeft-rc-"))  # short: Ray's socket paths live in it
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(shim),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("RAY_ADDRESS", None)
    common = [
        "--num-cpus",
        "1",
        "--block",
        "--disable-usage-stats",
        "--dashboard-agent-listen-port",
        "0",
        "--node-ip-address",
        "127.0.0.1",
    ]
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str, extra_env: dict[str, str]) -> None:
        with open(tmp / log, "w") as f:
            procs.append(
                subprocess.Popen(
                    [_ray_cli(), "start", *args, *common],
                    env={**env, **extra_env},
                    cwd=tmp,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    try:
        start(
            [
                "--head",
                "--port",
                str(port),
                "--include-dashboard",
                "false",
                "--temp-dir",
                str(tmp / "ray"),
            ],
            "head.log",
            {},
        )
        _wait_for(tmp / "head.log", "Ray runtime started", procs[-1])
        start(["--address", address], "node.log", {backends.RAY_NICENESS_ENV: str(NODE_NICE)})
        _wait_for(tmp / "node.log", "Ray runtime started", procs[-1])
        yield address
    finally:
        for p in reversed(procs):
            _stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in log.read_text():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    pytest.fail(f"ray start did not come up: {log.read_text()[-2000:]}")


@pytest.fixture
def driver(monkeypatch):
    """This process as the cluster's driver: loopback address, no token authentication."""
    import ray._private.services as services

    monkeypatch.setattr(
        services, "node_ip_address_from_perspective", lambda address=None: "127.0.0.1"
    )
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for s in (FL, MC):
        monkeypatch.setitem(suites.SUITES, s.name, s)
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_cluster_run_writes_the_process_pool_s_files(tmp_path, cluster, driver):
    from edgeft.cli import main

    pols = {FL.name: ["gs", "lyapunov"], MC.name: ["greedy", "ao"]}
    for s in (FL, MC):
        lb.run_leaderboard(
            s, pols[s.name], tmp_path / "pool" / s.name, workers=2, progress=False, plots=False
        )
    # the CLI, one suite per command (--policies names the policies of one family)
    for s in (FL, MC):
        assert (
            main(
                [
                    "leaderboard",
                    "--suite",
                    s.name,
                    "--policies",
                    ",".join(pols[s.name]),
                    "--backend",
                    "ray",
                    "--address",
                    cluster,
                    "--workers",
                    "2",
                    "--out",
                    str(tmp_path / "ray" / s.name),
                    "--no-plots",
                    "--no-progress",
                ]
            )
            == 0
        )
        assert not ray.is_initialized()  # disconnected again
        assert deterministic_view(tmp_path / "ray" / s.name) == deterministic_view(
            tmp_path / "pool" / s.name
        )


def test_cluster_pool_of_two_suites(tmp_path, cluster, driver, monkeypatch):
    from edgeft.leaderboard import runner

    monkeypatch.setattr(
        runner, "default_policies", lambda s: ["gs"] if s.family == "fedlora" else ["greedy"]
    )
    outs = [tmp_path / "ray" / FL.name, tmp_path / "ray" / MC.name]
    runner.run_leaderboards(
        [FL, MC], None, outs, backend="ray", address=cluster, workers=2, progress=False, plots=False
    )
    for s, out in zip((FL, MC), outs):
        lb.run_leaderboard(
            s, None, tmp_path / "pool" / s.name, workers=2, progress=False, plots=False
        )
        assert deterministic_view(out) == deterministic_view(tmp_path / "pool" / s.name)


def test_workers_of_both_nodes_import_the_shipped_edgeft_at_the_niceness_asked(
    cluster, driver, tmp_path
):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ship = backends.stage_package(tmp_path / "ship").parent
    ray.init(
        address=cluster,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env=backends.ray_runtime_env(ship),
    )
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2 and {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    ns: dict = {"__name__": "edgeft_cluster_probe"}
    exec(_PROBE, ns)
    probe = ray.remote(num_cpus=1)(ns["probe"])

    def on_each_node(nice):
        return ray.get(
            [
                probe.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                ).remote(nice)
                for n in nodes
            ]
        )

    # the cluster's own niceness (Ray's 15; RAY_worker_niceness on the second node) when none
    # is asked, then os.nice in the task (raising it needs no privilege)
    out = on_each_node(None)
    here = os.nice(0)  # the nodes' ray start ran at this niceness
    assert sorted(o["before"] for o in out) == sorted(
        min(19, here + inc) for inc in (NODE_NICE, HEAD_NICE)
    )
    for o in out:
        assert "/runtime_resources/working_dir_files/" in o["edgeft"], o  # the shipped copy
        assert o["envs"] == str(Path(o["edgeft"]).parent / "envs" / "__init__.py")
        assert not o["torch"]
    assert {o["after"] for o in on_each_node(19)} == {19}


def test_without_address_a_private_instance_starts_beside_the_cluster(
    tmp_path, cluster, driver, monkeypatch
):
    """No --address: a local instance of its own (``ray.init()`` would join the cluster named by
    RAY_ADDRESS or started on this node, which refuses ``num_cpus``), its workers at this
    process's niceness, like the process pool's."""
    monkeypatch.setenv("RAY_ADDRESS", cluster)
    backends._ray_init(ray, 1, None, None, True)  # what execute does without an address
    assert [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]] == ["127.0.0.1"]
    assert ray.cluster_resources()["CPU"] == 1  # not the cluster's two nodes
    ns: dict = {"__name__": "edgeft_cluster_probe"}
    exec(_PROBE, ns)
    out = ray.get(ray.remote(num_cpus=1)(ns["probe"]).remote(None))
    assert out["before"] == os.nice(0) and "/working_dir_files/" in out["edgeft"]
    lb.run_leaderboard(FL, ["gs"], tmp_path / "ray", backend="ray", progress=False, plots=False)
    ray.shutdown()
    lb.run_leaderboard(FL, ["gs"], tmp_path / "pool", backend="serial", progress=False, plots=False)
    assert deterministic_view(tmp_path / "ray") == deterministic_view(tmp_path / "pool")
