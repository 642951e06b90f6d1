"""Search flags the README promises, each checked where it lands: in the records, in the
Optuna journal, or in how trials ran. One budgeted search covers most of them."""

from __future__ import annotations

import json
import re

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nasmt.space.spec import ArchSpec
from conftest import CONV_SPACE, SMALL_SUITE, TINY_SPACE, nasmt
from nasmt.quant import is_fp32
from nasmt.run import LATENCY_FILE, TrialStatus, load_run, read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
QAT_STEPS = 3


def _journal(run):
    st = optuna.load_study(study_name="nasmt", storage=JournalStorage(JournalFileBackend(str(run / "study.journal"))))
    return st.get_trials(deepcopy=False)


def _most_at_once(trials) -> int:
    """The most trials that ran at the same time (from their recorded spans)."""
    events = sorted(e for t in trials for e in ((t.finished_at - t.timings["total_s"] + 1e-3, 1), (t.finished_at, -1)))
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


def _at_a_time(stdout: str) -> int:
    """The concurrency the search derived from the resources Ray reported ("N at a time")."""
    m = re.search(r"(\d+) at a time", stdout)
    assert m, stdout
    return int(m.group(1))


@pytest.fixture(scope="module")
def options_run(tmp_path_factory):
    # a local cluster of its own (no --address): it offers this machine's CPUs, the shared
    # one only its xdist worker's share (conftest.shared_cpus), too few for --cpus-per-trial 2
    out = tmp_path_factory.mktemp("opts") / "run"
    r = nasmt("search", "--space", CONV_SPACE, "--tasks", SMALL_SUITE, "--objectives", "mean_error,size_bytes",
          "--trials", 3, "--steps", 10, "--seed", 3, "--out", out, "--sampler", "nsga2",
          "--max-latency-ms", "0.000001", "--measure-latency", "--qat-steps", QAT_STEPS, "--latency-batch", 2,
          "--cpus-per-trial", 2)
    (out.parent / "stdout.txt").write_text(r.stdout)
    return out


def test_nsga2_sampler_drove_the_study(options_run):
    assert all("NSGAIISampler:generation" in t.system_attrs for t in _journal(options_run))


def test_max_latency_budget_reaches_records_and_sampler(options_run):
    trials = [t for t in read_trials(options_run) if t.status == TrialStatus.COMPLETE]
    assert len(trials) == 3
    for t in trials:  # no network runs in a nanosecond: every trial is over the budget
        assert t.metrics["feasible"] is False and t.metrics["latency_ms"] > 0.000001
    for jt in _journal(options_run):  # Optuna's constraints_func saw the violation
        assert jt.system_attrs["constraints"][0] > 0


def test_measure_latency_and_latency_batch(options_run):
    for t in read_trials(options_run):
        assert t.metrics["latency_source"] == "measured" and t.metrics["latency_batch"] == 2
    assert json.loads((options_run / LATENCY_FILE).read_text())["batch"] == 2
    assert load_run(options_run)["config"]["latency_batch"] == 2


def test_qat_steps_fine_tune_quantized_policies_only(options_run):
    trials = read_trials(options_run)
    quantized = [t for t in trials if not is_fp32(ArchSpec.from_json(t.spec))]
    assert quantized, "seed 3 should derive at least one quantized policy"
    for t in trials:
        assert t.metrics.get("qat_steps") == (QAT_STEPS if t in quantized else None)


def test_cpus_per_trial_sets_threads_and_concurrency(options_run):
    trials = read_trials(options_run)
    assert all(t.train["threads"] == 2 for t in trials)
    # concurrency = the local cluster's CPUs (as Ray reports them: this machine's) // 2
    from ray._private.utils import get_num_cpus  # how `ray.init` counts this machine's CPUs (cgroups too)

    conc = _at_a_time((options_run.parent / "stdout.txt").read_text())
    assert conc == max(1, get_num_cpus() // 2)
    assert _most_at_once(trials) <= conc


def test_quickstart_searches_and_writes_the_report(tmp_path, shared_ray):
    out = tmp_path / "qs"
    r = nasmt("quickstart", "--out", out, "--space", TINY_SPACE, "--tasks", SMALL_SUITE, "--trials", 2,
              "--steps", 10, "--max-concurrent", 1, *shared_ray)
    assert f"report: {out / 'report.html'}" in r.stdout
    assert (out / "report.html").stat().st_size > 100_000  # plotly.js embedded: works offline
    trials = read_trials(out)
    assert [t.status for t in trials] == [TrialStatus.COMPLETE] * 2
    assert _at_a_time(r.stdout) == 1 and _most_at_once(trials) == 1  # --max-concurrent 1
    assert all(t.train["threads"] == 1 for t in trials)
