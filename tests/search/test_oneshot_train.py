"""Phase 1 of the one-shot search (nasmt.search.oneshot.train): the supernet trained through
a real Ray Train TorchTrainer on tasks/people.toml with search_spaces/mtl.grammar, its
checkpoints written by the run's TrialSink, resumed per epoch; and the SimQ-NAS forward
(nasmt.quant.supernet) against the policy simulation evaluation uses."""

from __future__ import annotations

import hashlib

import pytest
import ray
import torch

from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model.supernet import SuperNet
from nasmt.quant.policy import with_policy
from nasmt.quant.simulation import simulate
from nasmt.quant.supernet import QuantSuperNet
from nasmt.search.oneshot.bank import (BANK_FILE, STATE_FILE, BankSettings, load_bank_bytes, new_bank, read_state,
                                       supernet_dir)
from nasmt.search.oneshot.train import OPTIM_FILE, epoch_lr, train_phase
from nasmt.space.grammar import load_grammar
from nasmt.train.supernet import candidate_loss
from conftest import ROOT

torch.set_num_threads(1)
SETTINGS = BankSettings(n_samples=40, seed=0)  # a small sizing sample: fast banks
TRAIN = {"batch_size": 128, "lr": 3e-3, "weight_decay": 1e-4, "seed": 0, "n_random": 1, "settings": SETTINGS}


@pytest.fixture(scope="module")
def people():
    suite = load_suite(ROOT / "tasks" / "people.toml")
    return load_grammar(ROOT / "search_spaces" / "mtl.grammar"), suite, load_data_cached(suite)


@pytest.fixture(scope="module")
def cluster(ray_connected):
    """This process drives the session's shared Ray cluster (conftest.ray_connected)."""
    return ray_connected


@pytest.fixture(scope="module")
def straight(cluster, people, tmp_path_factory):
    """One run trained for 2 epochs in one call (1 worker, quantization simulated)."""
    g, suite, _ = people
    run = tmp_path_factory.mktemp("straight")
    said: list = []
    state = train_phase(run, g, suite, epochs=2, say=said.append, **TRAIN)
    return run, state, said


def _bank(people, run=None):
    g, suite, data = people
    bank = new_bank(g, suite, data, SETTINGS)
    if run is not None:
        load_bank_bytes(bank, (supernet_dir(run) / BANK_FILE).read_bytes())
    return bank


def _losses(bank, people):
    _, suite, data = people
    out = []
    for spec in (bank.largest, bank.smallest):
        bank.recalibrate(spec, data, n_batches=2, batch_size=128)
        out.append(candidate_loss(bank, spec, suite, data))
    return out


def test_quantized_forward_is_the_simulated_policy(people):
    """Weights-only policies: QuantSuperNet's forward equals `simulate` of the extracted
    candidate exactly; int8 activations (batch ranges in training, static calibration in
    `simulate`) agree closely; both differ from the fp32 bank; gradients reach the bank
    through the fake-quantized slices (STE)."""
    g, suite, data = people
    qb = QuantSuperNet.for_suite(g, suite, data, n_samples=SETTINGS.n_samples, seed=SETTINGS.seed).eval()
    pb = SuperNet.for_suite(g, suite, data, n_samples=SETTINGS.n_samples, seed=SETTINGS.seed).eval()
    assert all(torch.equal(a, b) for a, b in zip(qb.state_dict().values(), pb.state_dict().values()))
    x = torch.from_numpy(data.x["val"][:64])
    for w, a in [("int4", "fp32"), ("int8", "fp32"), ("bf16", "fp32"), ("int8", "int8")]:
        spec = with_policy(qb.largest, w, a)
        with torch.no_grad():
            got, plain = qb(spec, x), pb(spec, x)
            net = qb.extract(spec).eval()
            with simulate(net, spec, calib_x=x):
                want = net(x)
        diff = max(float((got[t] - want[t]).abs().max()) for t in got)
        moved = max(float((got[t] - plain[t]).abs().max()) for t in got)
        assert moved > 1e-5, (w, a)
        if a == "fp32":
            assert diff == 0.0, (w, a, diff)
        else:  # measured 6.7e-4 (the fp32 difference: 4.7e-4)
            assert diff < 5e-3, (w, a, diff)
    qb.train()
    spec = with_policy(qb.largest, "int4", "int8")
    sum(v.sum() for v in qb(spec, x).values()).backward()
    reached = [p.grad for p in qb.parameters() if p.grad is not None]
    assert reached and all(torch.isfinite(gr).all() for gr in reached) and any(gr.abs().sum() > 0 for gr in reached)


def test_two_epochs_on_one_worker(straight, people):
    """(a) Two epochs through Ray Train: the bank, its state and the optimizer moments are in
    the run directory, the state says 2 epochs with the cosine rates, and the largest and
    smallest candidates' validation losses are below the untrained bank's."""
    run, state, said = straight
    d = supernet_dir(run)
    assert {p.name for p in d.iterdir()} >= {BANK_FILE, STATE_FILE, OPTIM_FILE}
    assert read_state(run) == state and state["epochs_done"] == 2
    h = state["train"]["history"]
    assert [e["epoch"] for e in h] == [1, 2] and [e["workers"] for e in h] == [1, 1]
    assert [e["lr"] for e in h] == [epoch_lr(3e-3, 1, 2), epoch_lr(3e-3, 2, 2)] == [3e-3, 1.5e-3]
    assert h[0]["steps"] == 2100 // 128 and h[1]["loss"] < h[0]["loss"]
    assert h[-1]["digests"] == [hashlib.sha256((d / BANK_FILE).read_bytes()).hexdigest()]
    assert state["train"]["quantize"] is True and state["train"]["optimizer_moments"] is True
    before, after = _losses(_bank(people), people), _losses(_bank(people, run), people)
    # measured: largest 3.07 -> 1.62, smallest 3.05 -> 2.10
    assert after[0] < 0.8 * before[0] and after[1] < 0.8 * before[1], (before, after)
    assert any("epoch 2/2" in s for s in said), said


def test_resume_trains_only_the_missing_epoch_from_the_checkpoint(straight, people, tmp_path):
    """(b) epochs=1, then epochs=2 on the same run: the second call trains epoch 2 only
    (epoch 1's record is the first call's, unchanged) and starts from the epoch-1 bank and
    AdamW moments: its bank is byte-identical to the run trained in one call, whose epoch 2
    started from the same point. A third call trains nothing."""
    g, suite, _ = people
    run = tmp_path / "run"
    first = train_phase(run, g, suite, epochs=1, say=lambda s: None, **TRAIN)
    assert first["epochs_done"] == 1
    one = (supernet_dir(run) / BANK_FILE).read_bytes()
    said: list = []
    second = train_phase(run, g, suite, epochs=2, say=said.append, **TRAIN)
    assert any("resuming after epoch 1" in s for s in said), said
    assert second["epochs_done"] == 2
    assert second["train"]["history"][0] == first["train"]["history"][0]  # not retrained (its timing too)
    two = (supernet_dir(run) / BANK_FILE).read_bytes()
    straight_run = straight[0]
    assert one != two
    assert two == (supernet_dir(straight_run) / BANK_FILE).read_bytes()
    assert [e["loss"] for e in second["train"]["history"]] == [e["loss"] for e in straight[1]["train"]["history"]]
    said.clear()
    third = train_phase(run, g, suite, epochs=2, say=said.append, **TRAIN)
    assert third == second and (supernet_dir(run) / BANK_FILE).read_bytes() == two
    assert any("nothing to train" in s for s in said), said
    with pytest.raises(ValueError, match="lr 0.003 -> 0.01"):
        train_phase(run, g, suite, epochs=3, say=lambda s: None, **{**TRAIN, "lr": 1e-2})
    with pytest.raises(ValueError, match="sized with"):
        train_phase(run, g, suite, epochs=3, say=lambda s: None, **{**TRAIN, "settings": BankSettings(41, 0)})
    assert read_state(run) == second


def test_two_cpu_workers_keep_one_bank(cluster, people, tmp_path):
    """(c) Two Ray Train workers (gloo): each trains its half of the train split, the
    gradients are averaged every step, and both ranks end the epoch with the same bank
    (sha256 of each rank's bytes, all-gathered and recorded), the one in the run."""
    g, suite, _ = people
    run = tmp_path / "run"
    # half a CPU each: both fit on a shared cluster of one CPU (conftest.shared_cpus)
    state = train_phase(run, g, suite, epochs=1, workers=2, cpus_per_worker=0.5, say=lambda s: None, **TRAIN)
    h = state["train"]["history"]
    assert len(h) == 1 and h[0]["workers"] == 2 and h[0]["steps"] == 1050 // 128
    digests = h[0]["digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert digests[0] == hashlib.sha256((supernet_dir(run) / BANK_FILE).read_bytes()).hexdigest()
    trained, init = _bank(people, run), _bank(people)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), init.state_dict().values()))


def test_resume_checks_the_split_and_distill_settings():
    """A state.json from before `split` existed resumes as a position-keyed bank (and not
    as a split one); a changed distillation weight is refused like any training setting."""
    from nasmt.search.oneshot.train import _check_resumable

    wanted = {"batch_size": 128, "lr": 3e-3, "weight_decay": 1e-4, "seed": 0, "n_random": 1, "quantize": True,
              "distill": 0.0}
    old = {"bank": {"n_samples": 300, "seed": 0}, "train": {k: v for k, v in wanted.items() if k != "distill"}}
    _check_resumable(old, BankSettings(), wanted)
    with pytest.raises(ValueError, match="sized with"):
        _check_resumable(old, BankSettings(split=True), wanted)
    new = {"bank": {"n_samples": 300, "seed": 0, "split": True}, "train": {**wanted, "distill": 0.5}}
    _check_resumable(new, BankSettings(split=True), {**wanted, "distill": 0.5})
    with pytest.raises(ValueError, match="distill 0.5 -> 0.0"):
        _check_resumable(new, BankSettings(split=True), wanted)
