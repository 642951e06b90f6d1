"""A real two-node Ray cluster on this machine: the head offers no CPUs, so every trial
runs on the worker node, and the worker runs in a private mount namespace with a tmpfs
over the run directory's parent, so it cannot see the driver's disk (as two machines
without a shared filesystem). Needs root (CI runs as root) for `unshare -m`.

Also: a SIGKILLed worker raylet mid-search. (A stale `ray_current_cluster` file is
tested in test_resume's SIGKILL test: its last session starts a local cluster of its own.)"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SMALL_SUITE, TINY_SPACE, free_port, kill_session, nasmt, session_procs, wait_for_cluster
from nasmt.run import TrialStatus, read_trials, trial_dir
from nasmt.search.oneshot.bank import read_state

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {
    # token authentication with a token of its own (a fresh machine has no ~/.ray/auth_token,
    # and `ray start` refuses RAY_AUTH_MODE=token without one)
    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
    # notice a dead node within ~2 s instead of ~30 s
    "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0",
}

needs_unshare = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                   reason="needs root and unshare for a worker node with its own mount namespace")


def _env() -> dict:
    return {**os.environ, **ENV}


class Cluster:
    def __init__(self, base: Path):
        self.base = base  # the tmpfs-covered folder: run directories live under it
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head = subprocess.Popen(
            [RAY, "start", "--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=false",
             "--disable-usage-stats", "--block"],
            env=_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers: list[subprocess.Popen] = []
        self._wait_cpus(0)

    def add_worker(self) -> subprocess.Popen:
        # one CPU: one trial (or Ray Train worker, or scoring task) at a time there, so one
        # worker process pays the torch and ray.tune imports where two CPUs started two
        cmd = (f"mount -t tmpfs tmpfs {self.base} && exec {RAY} start --address={self.address} --num-cpus=1 "
               f"--disable-usage-stats --block")
        w = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd], env=_env(),
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(w)
        self._wait_cpus(1)
        return w

    def _wait_cpus(self, cpus: float) -> None:
        wait_for_cluster(self.address, _env(), cpus=cpus, limit_s=90, alive=lambda: self.head.poll() is None)

    def raylet_of(self, worker: subprocess.Popen) -> int:
        for pid, cmd in session_procs(worker.pid):
            if cmd.split(" ")[0].endswith("/raylet"):
                return pid
        raise AssertionError("the worker node has no raylet")

    def stop(self) -> None:
        for p in [*self.workers, self.head]:
            kill_session(p)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("nodisk")
    c = Cluster(base)
    try:
        c.add_worker()
        yield c
    finally:
        c.stop()


def _search(cluster, out, *extra):
    return nasmt("search", "--space", TINY_SPACE, "--tasks", SMALL_SUITE, "--sampler", "random", "--out", out,
                 "--address", cluster.address, *extra, env=ENV)


@needs_unshare
def test_node_death_stops_cleanly_and_resume_completes(cluster):
    """A two-node search without a shared filesystem: its worker node's raylet is
    SIGKILLed mid-trial, the search stops cleanly, a new worker node joins, resume
    completes it there; every trial's files came through Ray, and report and export work
    on the run."""
    out = cluster.base / "run-kill"
    # trial 0 sleeps 0.5 s per step (fault `slow`: >= 20 s), so it is surely training when
    # its spec.json shows up and the worker node is killed: an event, not a clock
    args = ["search", "--space", TINY_SPACE, "--tasks", SMALL_SUITE, "--sampler", "random", "--out", out,
            "--address", cluster.address, "--trials", 3, "--steps", 40, "--max-failures", 1,
            "--inject-fault", "slow@0"]
    p = subprocess.Popen(
        [sys.executable, "-m", "nasmt.cli", *map(str, args)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (trial_dir(out, 0) / "spec.json").exists():
            assert p.poll() is None and time.monotonic() < deadline, p.stdout.read() if p.poll() is not None else "timeout"
            time.sleep(0.2)
        os.kill(cluster.raylet_of(cluster.workers[-1]), signal.SIGKILL)
        log, _ = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            kill_session(p)
    assert p.returncode == 0, log
    stop_lines = [ln for ln in log.splitlines() if ln.startswith("stopped:")]
    assert len(stop_lines) == 1 and "no capacity left" in stop_lines[0] and "--resume" in stop_lines[0], log
    trials = read_trials(out)
    died = [t for t in trials if t.status == TrialStatus.FAILED and t.error.startswith("node died")]
    assert 0 in {t.number for t in died}, [(t.number, t.error) for t in trials]
    assert died and all(t.interrupted and not t.counts_as_failure for t in died), [(t.number, t.error) for t in trials]
    assert not [t for t in trials if t.counts_as_failure], "a node death counted toward --max-failures 1"
    # a new worker node joins; resume finishes the search on it
    cluster.workers.pop().wait(timeout=30)
    cluster.add_worker()
    r = nasmt("search", "--resume", out, env=ENV)
    assert "resuming" in r.stdout
    complete = [t for t in read_trials(out) if t.status == TrialStatus.COMPLETE]
    assert len(complete) == 3, [(t.number, t.status, t.error) for t in read_trials(out)]
    for t in complete:  # the files the worker could not write itself came through Ray
        assert {p.name for p in trial_dir(out, t.number).iterdir()} >= {"spec.json", "result.json", "weights.safetensors"}
    nasmt("report", out)
    nasmt("export", out, "--pick", "best:mean_error", "--out", cluster.base / "exported", "--no-quantized")
    assert (cluster.base / "exported" / "model.py").exists()


@needs_unshare
def test_two_node_oneshot_search_without_a_shared_filesystem(cluster):
    """Supernet training (a Ray Train worker on the worker node: its checkpoint comes
    through the sink) and candidate scoring (Ray tasks there, the bank from the object
    store) on a node that cannot see the run directory."""
    out = cluster.base / "run-oneshot"
    r = _search(cluster, out, "--oneshot", "--trials", 12, "--candidate-batch", 6, "--supernet-epochs", 1,
                "--batch-size", 64)
    assert "12 of 12 candidates scored" in r.stdout, r.stdout
    state = read_state(out)
    assert state["epochs_done"] == 1 and (out / "supernet" / "bank.safetensors").exists()
    recs = read_trials(out)
    complete = [t for t in recs if t.status == TrialStatus.COMPLETE]
    assert len(complete) == 12 and all(t.train["inherited"]["supernet_epochs"] == 1 for t in complete)
    nasmt("export", out, "--trial", complete[0].number, "--out", cluster.base / "exported-oneshot", "--no-quantized")
    assert (cluster.base / "exported-oneshot" / "model.py").exists()
