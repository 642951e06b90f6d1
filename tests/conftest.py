"""Shared fixtures. `tiny_run` is one real Ray Tune + Optuna search on real MultiMNIST
(tiny grammar, few steps), run once per test run (`built_once`: the first of the xdist
workers that asks builds it, the other reuses it; the suite runs on two, see HEAVY_FIRST)
and shared read-only by the report / export / dashboard tests. Tests that change a run
copy it first; a test that runs trials on a copy passes its own worker's `--address`
(the run recorded its builder's cluster).

`nasmt(...)` runs the real CLI entry point (`nasmt.cli.main`) in this process and returns
its exit code, stdout and stderr (see its docstring for when it starts a process instead):
a search then reuses this process's imports and its Ray connection.

`shared_ray` is one Ray cluster per xdist worker (`ray start --head`, the worker's share of this
machine's CPUs: `shared_cpus`, a private temp folder, its own process group, no log monitor) for the session's searches that only need *a* local
cluster: they pass `*shared_ray` (`--address HOST:PORT`) and skip starting one of their
own (measured: a search's fresh local cluster costs 5-20 s on a busy 2-core machine).
Searches that test local-cluster behaviour, SIGKILL a driver (kill_helpers) or build
their own cluster (test_cluster) do not use it. Every Ray cluster and driver of the
session uses token authentication with one session token (RAY_AUTH_MODE=token,
RAY_AUTH_TOKEN, set in os.environ when this file is imported, before anything imports
ray: a fresh machine has no ~/.ray/auth_token, and Ray reads them once, at import), so
resuming a run recorded against the shared cluster joins it again."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

ROOT = Path(__file__).resolve().parent.parent
SMALL_SUITE = ROOT / "tests" / "data" / "mm_small.toml"
TINY_SPACE = ROOT / "search_spaces" / "tiny.grammar"
CONV_SPACE = ROOT / "search_spaces" / "conv.grammar"


# Token authentication for every Ray cluster and driver of the session, set before anything
# imports ray: Ray reads these once, when it is imported, so the in-process CLI calls
# (`nasmt(...)`) can join the shared cluster only if they are there from the start. A fresh
# local cluster works with them too; test_cluster's clusters carry tokens of their own.
_SESSION_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
os.environ.update(_SESSION_AUTH)


def nasmt(*args, check=True, timeout=600, env=None, fresh_process=False) -> subprocess.CompletedProcess:
    """Run the real CLI (`nasmt.cli.main`) and return what a process would: exit code,
    stdout, stderr. In this process by default (measured: a search's own interpreter,
    imports and Ray connection cost ~5 s of a 2-core machine, and the suite runs ~50 of
    them), with stdout/stderr captured, cwd = the repository root, SystemExit turned into its code and an uncaught
    exception into exit 1 with its traceback on stderr, as the interpreter would.
    In a fresh `python -m nasmt.cli` process when `fresh_process`, when `env` is given (a
    variable a process reads at start-up) or when NASMT_TEST_FRESH_PROCESS=1 (the whole
    suite the old way). What needs a process of its own (SIGKILL, a cluster of its own,
    a venv without nasmt) starts one itself."""
    args = [str(a) for a in args]
    if (fresh_process or env or os.environ.get("NASMT_TEST_FRESH_PROCESS") == "1"
            or threading.current_thread() is not threading.main_thread()):  # cwd, stdout, Tune's registry: one at a time
        e = {**os.environ, **(env or {})}  # the session's Ray auth variables included
        p = subprocess.run(
            [sys.executable, "-m", "nasmt.cli", *args],
            capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=e,
        )
    else:
        p = _in_process(args)
    if check and p.returncode != 0:
        raise AssertionError(f"nasmt {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _process_warning_filters() -> None:
    """Inside catch_warnings: Python's default filters, and warnings printed to (the
    redirected) sys.stderr as an interpreter prints them, not recorded by pytest."""
    warnings.resetwarnings()
    for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=cat)

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show


def _in_process(args: list[str]) -> subprocess.CompletedProcess:
    import contextlib
    import io
    import traceback

    from nasmt.cli import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()  # the Ray auth variables are in os.environ already (_SESSION_AUTH)
    was_shared = _on_shared_cluster()
    if _joined_port() is not None and _wanted_port(args) not in (False, _joined_port()):
        sys.modules["ray"].shutdown()  # it asks for another cluster (a fresh local one): leave this one
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            _process_warning_filters()
            try:
                code = main(args)
            except SystemExit as e:  # argparse's usage errors and --help
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(cwd)
        if _joined_port() is not None and not _on_shared_cluster():
            # a search's local cluster ends with it, as it would with its own process (else it
            # stays up, idle but polling, and later searches asking for the shared one run on it)
            sys.modules["ray"].shutdown()
            if was_shared:  # a test holding `ray_connected` stays a driver there
                import ray
                ray.init(address=_SHARED[0], logging_level="ERROR", log_to_driver=False)
    return subprocess.CompletedProcess(["nasmt", *args], code or 0, out.getvalue(), err.getvalue())


_SHARED: list[str] = []  # the shared cluster's HOST:PORT, once `shared_ray` started it


def _joined_port() -> int | None:
    """The GCS port of the cluster this process is a Ray driver of, if any."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])


def _on_shared_cluster() -> bool:
    port = _joined_port()
    return port is not None and bool(_SHARED) and port == int(_SHARED[0].rsplit(":", 1)[1])


def _wanted_port(args: list[str]) -> int | None | bool:
    """The GCS port of the cluster an in-process CLI call will join: a search's --address,
    or the address a resumed run recorded; None for a fresh local cluster of its own;
    False for a command that starts no Ray driver."""
    if not args or args[0] != "search" or "--help" in args or "-h" in args:
        return False
    address = args[args.index("--address") + 1] if "--address" in args[:-1] else None
    if "--resume" in args[:-1] and address is None:
        from nasmt.errors import RunDirError
        from nasmt.search import resume_config

        try:
            address = resume_config(Path(args[args.index("--resume") + 1])).address
        except RunDirError:
            return False  # the CLI refuses it before it starts Ray
    if address is None:
        return None
    try:
        return int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return False  # "auto" or a bad address: leave it to the CLI


# The suite runs on two pytest-xdist workers, one test file per work unit (pyproject's
# addopts: `-n 2 --dist loadfile --no-loadscope-reorder`). The files that cost the most
# go first, so the two workers end together instead of one finishing the suite alone
# (longest-first scheduling). Ordered by each file's seconds (its tests' wall time summed)
# in a run of the README's test command at f83dc8f on the 2-core machine: 164, 140, 107,
# 66, 58, 56, 55, 50, 48, 42, 40, 38, 31, 31, 23, 23, 22, 21 s; a file missing here keeps
# its collection order after them, and within a file the order never changes.
HEAVY_FIRST = [
    "search/test_oneshot_search.py", "search/test_resume.py", "search/test_cluster.py",
    "search/test_oneshot_train.py", "search/test_options.py", "report/test_report_scale.py",
    "search/test_oneshot_tabular.py", "search/test_oneshot_evaluate.py", "search/test_warm.py",
    "report/test_dashboard_browser.py", "search/test_faults.py", "export/test_tabular_suites_export.py",
    "cli/test_readme_search_flags.py", "benchmarks/test_bench_gpu.py", "export/test_mtl_search_export.py",
    "quant/test_quant_search.py", "model/test_supernet.py", "cli/test_bad_inputs.py",
]


def _file_rank(path: Path) -> int:
    path = path.resolve()
    rel = path.relative_to(ROOT / "tests").as_posix() if path.is_relative_to(ROOT / "tests") else ""
    return HEAVY_FIRST.index(rel) if rel in HEAVY_FIRST else len(HEAVY_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _file_rank(item.path))  # stable: a file's own order is kept


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


def wait_for_cluster(address: str, env: dict, cpus: float | None = None, limit_s: float = 300,
                     alive=lambda: True) -> None:
    """Wait until the Ray cluster at HOST:PORT takes a driver and offers CPUs (exactly
    `cpus` of them when given: a node joining or leaving). Nothing is probed before the GCS
    port listens; then one probe process joins once and polls (each fresh `import ray`
    costs ~2 s of CPU), started again only while the head is not ready yet. `alive()`
    false (the head process exited) fails at once; `limit_s` only bounds a cluster that
    never comes up."""
    host, port = address.rsplit(":", 1)
    code = ("import ray, sys, time; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "end = time.monotonic() + float(sys.argv[3]); want = sys.argv[2]\n"
            "def ok():\n"
            "    have = ray.cluster_resources().get('CPU', 0.0)\n"
            "    return have == float(want) if want else have > 0\n"
            "while not ok():\n"
            "    assert time.monotonic() < end\n"
            "    time.sleep(0.5)")
    deadline = time.monotonic() + limit_s
    while True:
        left = deadline - time.monotonic()
        assert alive(), f"the Ray cluster at {address} exited"
        assert left > 0, f"the Ray cluster at {address} never came up" + ("" if cpus is None else f" with {cpus:g} CPU")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            time.sleep(0.5)
            continue
        p = subprocess.run([sys.executable, "-c", code, address, "" if cpus is None else str(cpus), str(left)],
                           env=env, capture_output=True, timeout=left + 60)
        if p.returncode == 0:
            return
        time.sleep(1)


def free_port() -> int:
    """A TCP port nothing on this machine listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shared_cpus() -> int:
    """The CPUs a shared cluster offers: its xdist worker's share of this machine's cores
    (at least 1). On the 2-core CI machine with two workers that is 1, so each search there
    runs one trial at a time and starts one trial worker process (~6 s of CPU for its
    torch and ray.tune imports) where a 2-CPU cluster started two, and the two workers'
    trials do not oversubscribe the two cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, len(os.sched_getaffinity(0)) // max(1, workers))


@pytest.fixture(scope="session")
def shared_ray():
    """["--address", HOST:PORT] of the session's shared Ray cluster (see the module docstring)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="nasmt-ray-")  # short: Ray's socket paths live under it
    # the session's token (_SESSION_AUTH, in os.environ): `ray start` refuses RAY_AUTH_MODE=token
    # without one, and a fresh machine (empty HOME) has no ~/.ray/auth_token
    env = dict(os.environ)
    ray = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        # no log monitor: every driver here runs with log_to_driver=False, and the monitor polls
        # the session's log files all along (measured: ~20 s of CPU in a 15-minute suite)
        [ray, "start", "--head", f"--port={port}", f"--num-cpus={shared_cpus()}", "--include-dashboard=false",
         "--include-log-monitor=false", "--disable-usage-stats", f"--temp-dir={temp}", "--block"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    _SHARED[:] = [address]
    try:
        wait_for_cluster(address, env, alive=lambda: head.poll() is None)
        yield ["--address", address]
    finally:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()  # in-process searches' driver: leave before its cluster goes
        kill_session(head)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_connected(shared_ray):
    """This process as a Ray driver on the shared cluster (where the in-process CLI calls
    put it too: one connection per process), for tests that call Ray themselves."""
    import ray

    if not ray.is_initialized():
        ray.init(address=shared_ray[1], logging_level="ERROR", log_to_driver=False)
    return shared_ray


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


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder `build(folder)` fills, made once per test run: the first xdist worker
    that asks builds it under a file lock, the other waits for it and reuses it (a
    session fixture alone is built once per worker). Read-only for the tests."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"  # the run's, all workers'
    root.mkdir(exist_ok=True)
    out, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the worker dies)
        if not done.exists():  # a worker that failed to build it left no mark: build again
            shutil.rmtree(out, ignore_errors=True)
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shared_ray) -> Path:
    def build(out):
        nasmt("search", "--space", CONV_SPACE, "--tasks", SMALL_SUITE, "--objectives", "mean_error,params",
              "--trials", 4, "--steps", 30, "--out", out, "--seed", 1, "--sampler", "random", *shared_ray)

    return built_once(tmp_path_factory, "tiny", build)


@pytest.fixture(scope="session")
def tiny_finalized(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """(a copy of tiny_run finalized by `nasmt finalize --epochs 0.2`, that command's
    stdout): shared read-only; tests that change it copy it first."""
    def build(folder):
        folder.mkdir()
        shutil.copytree(tiny_run, folder / "fin", ignore=shutil.ignore_patterns("ray"))
        (folder / "stdout.txt").write_text(nasmt("finalize", folder / "fin", "--epochs", 0.2).stdout)

    folder = built_once(tmp_path_factory, "finalized", build)
    return folder / "fin", (folder / "stdout.txt").read_text()


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("ray"))
    return dst
