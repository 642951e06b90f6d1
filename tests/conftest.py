"""Shared fixtures. `tiny_run` is one real Ray Tune + Optuna search on real MultiMNIST
(tiny grammar, few steps), run once per test session and shared read-only by the
report / export / dashboard tests. Tests that change a run copy it first.

`shared_ray` is one Ray cluster (`ray start --head`, this machine's CPUs, a private temp
folder, its own process group) for the session's searches that only need *a* local
cluster: they pass `*shared_ray` (`--address HOST:PORT`) and skip starting one of their
own (measured: a search's fresh local cluster costs 5-20 s on a busy 2-core machine).
Searches that test local-cluster behaviour, SIGKILL a driver (kill_helpers) or build
their own cluster (test_cluster) do not use it. It uses token authentication with a
token of its own (RAY_AUTH_TOKEN: a fresh machine has no ~/.ray/auth_token); once it is
up, every `nasmt(...)` call carries RAY_AUTH_MODE=token and that token (a fresh local
cluster works with them too), so resuming a run recorded against it joins it again."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

ROOT = Path(__file__).resolve().parent.parent
SMALL_SUITE = ROOT / "tests" / "data" / "mm_small.toml"
TINY_SPACE = ROOT / "search_spaces" / "tiny.grammar"
CONV_SPACE = ROOT / "search_spaces" / "conv.grammar"


_SHARED_RAY_ENV: dict = {}  # set once the shared cluster is up


def nasmt(*args, check=True, timeout=600, env=None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    e = dict(os.environ)
    e.update(_SHARED_RAY_ENV)
    e.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "nasmt.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=e,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"nasmt {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def mm():
    """(suite, data) of tests/data/mm_small.toml: real MultiMNIST composites, few examples."""
    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite

    suite = load_suite(SMALL_SUITE)
    return suite, load_data_cached(suite)


def small_conv_spec(data):
    """The spec of `small_conv_net`: conv 3x3, 4 channels, stride 2; every task: global
    pool -> its output layer; fp32 throughout."""
    from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, StageSpec

    return ArchSpec(
        space="t", input_shape=tuple(data.input_shape),
        stages=(StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": 4, "s": 2}),)),),
        branches=tuple(BranchSpec(t, 1, (), (OpSpec("gap"),), n) for t, n in data.n_outputs.items()),
    )


def small_conv_net(data, seed: int = 0):
    """A one-stage network for `data` (`small_conv_spec`), seeded: the small real model
    of the training-loop tests."""
    from nasmt.model.build import build

    torch.manual_seed(seed)
    return build(small_conv_spec(data))


def _ray_is_up(address: str, env: dict) -> bool:
    code = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); assert ray.cluster_resources().get('CPU')"
    return subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True).returncode == 0


def free_port() -> int:
    """A TCP port nothing on this machine listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def shared_ray():
    """["--address", HOST:PORT] of the session's shared Ray cluster (see the module docstring)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="nasmt-ray-")  # short: Ray's socket paths live under it
    # token authentication with a token of its own: `ray start` refuses RAY_AUTH_MODE=token
    # without one, and a fresh machine (empty HOME) has no ~/.ray/auth_token
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **auth}
    ray = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray, "start", "--head", f"--port={port}", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}", "--block"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # only bounds a cluster that never comes up
        while not _ray_is_up(address, env):
            assert head.poll() is None, f"ray start exited with {head.returncode}"
            assert time.monotonic() < deadline, "the shared Ray cluster never came up"
            time.sleep(1)
        _SHARED_RAY_ENV.update(auth)
        yield ["--address", address]
    finally:
        _SHARED_RAY_ENV.clear()
        kill_session(head)
        shutil.rmtree(temp, ignore_errors=True)


def session_procs(sid: int) -> list[tuple[int, str]]:
    """Live (non-zombie) processes of session `sid` (a killed driver's or cluster's own
    session, so everything listed was started by this test session)."""
    procs = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            procs.append((int(name), cmd.strip()))
    return procs


def kill_session(p: subprocess.Popen) -> None:
    """SIGKILL `p`'s process group, then whatever else lives in its session (Ray's
    workers put themselves in process groups of their own, but stay in the session);
    fails if something of it survives 30 s of that."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=60)
    deadline = time.monotonic() + 30
    while True:
        left = session_procs(p.pid)
        if not left:
            return
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of the killed session survive: {left}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shared_ray) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    nasmt(
        "search", "--space", CONV_SPACE, "--tasks", SMALL_SUITE, "--objectives", "mean_error,params",
        "--trials", 4, "--steps", 30, "--out", out, "--seed", 1, "--sampler", "random", *shared_ray,
    )
    return out


@pytest.fixture(scope="session")
def tiny_finalized(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """(a copy of tiny_run finalized by `nasmt finalize --epochs 0.2`, that command's
    stdout): shared read-only; tests that change it copy it first."""
    run = tmp_path_factory.mktemp("finalized") / "fin"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("ray"))
    return run, nasmt("finalize", run, "--epochs", 0.2).stdout


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("ray"))
    return dst
