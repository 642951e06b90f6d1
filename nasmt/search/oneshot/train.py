"""Phase 1 of a one-shot search: the supernet's training through Ray, resumable per epoch.

`train_phase` runs `nasmt.train.supernet`'s sandwich rule (the one training loop, one call
per epoch) in a Ray Train `TorchTrainer` when `workers` > 1: data-parallel workers (gloo on
CPU, nccl on GPU, the process group is Ray Train's), each building the same bank (same
`BankSettings`: identical shapes and initial values) and training on its own shard of the
train split (rows rank::workers) in its own batch order; one worker is a plain Ray task
(`_single_worker`: Ray Train's start and stop cost a one-worker fit ~30 s here). Every step:

* all workers draw the SAME candidates (the sandwich hook is seeded by seed and epoch,
  not by rank), so their gradients are of one objective;
* each candidate runs with its quantization policy simulated on the shared weights when
  `quantize` (SimQ-NAS; `nasmt.quant.supernet.QuantSuperNet`);
* after the balancer's backward, `_AllReduce` averages the gradients over the workers:
  one `all_reduce` of a flat buffer holding every bank tensor's gradient (zeros where a
  worker has none) plus one presence flag per tensor, so a tensor no worker reached keeps
  `grad = None` (AdamW leaves it alone, as on one worker). Not torch DDP: a sandwich step
  runs 2 + n_random forwards before one backward, which DDP's reducer does not support.

Learning rate: constant within an epoch, cosine over epochs from the epoch index
(`epoch_lr`: lr * (1 + cos(pi (e - 1) / epochs)) / 2), with a linear warm-up over the
first WARMUP_SHARE of epoch 1's steps: every rate depends only on (epoch, step), so a run
resumes at an epoch boundary exactly. Loss balancing is held at "equal" (the `train` rule
is not judged by weight sharing). `distill` > 0: in-place distillation of the smaller
candidates from the largest one's predictions (`nasmt.train.supernet`).

Checkpoints: after each epoch rank 0 sends the bank's safetensors, the optimizer's AdamW
moments (`optim.safetensors`, written first, stamped with the epoch) and the state record
(`bank.state_record`: settings, epochs done, per-epoch history) to the run's `TrialSink`
actor on the driver's node (no worker writes the run directory: no shared disk). Every
rank checks that all ranks hold the same bank (sha256 of its bytes, all-gathered) and
rank 0 records the digests. A restart reads `state.json`: k epochs done -> the bank and
moments are put in Ray's object store and training continues at epoch k + 1 (with the
moments and the per-epoch seeds, a resumed run reproduces an uninterrupted one);
`epochs_done >= epochs` trains nothing.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
import threading
from dataclasses import asdict, replace
from pathlib import Path

from nasmt.search.oneshot.bank import (BANK_FILE, BankSettings, bank_bytes, load_bank_bytes, read_state, state_record,
                                       supernet_dir)

OPTIM_FILE = "optim.safetensors"
WARMUP_SHARE = 0.25  # of epoch 1's steps: linear warm-up of the rate
BALANCE = "equal"  # held during supernet training
RESUME_KEYS = ("batch_size", "lr", "weight_decay", "seed", "n_random", "quantize", "distill")  # must match to resume
POLL_S = 1.0  # how often the driver looks for a finished epoch (progress lines)


# -- schedule and seeds (functions of the epoch / step only: resumable) -------------------

def epoch_lr(lr: float, epoch: int, epochs: int) -> float:
    """The rate of epoch `epoch` (1-based) of `epochs`: cosine over epochs."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / max(1, epochs)))


def step_lr(lr: float, epoch: int, epochs: int, step: int, steps_per_epoch: int) -> float:
    """The rate of step `step` (1-based, within the epoch): epoch_lr, warmed up in epoch 1."""
    base = epoch_lr(lr, epoch, epochs)
    warm = max(1, round(WARMUP_SHARE * steps_per_epoch))
    return base * min(1.0, step / warm) if epoch == 1 else base


def _batch_seed(seed: int, rank: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 1009 + rank) % (2**31)


def _sandwich_seed(seed: int, epoch: int) -> int:  # no rank: every worker draws the same candidates
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31)


# -- optimizer moments as safetensors ------------------------------------------------------

def optim_bytes(bank, opt_state: dict, epochs_done: int) -> bytes:
    """AdamW's per-tensor state keyed `optim.<bank key>.<exp_avg|exp_avg_sq|step>`."""
    from safetensors.torch import save

    names = [n for n, _ in bank.named_parameters()]
    out = {}
    for i, st in opt_state["state"].items():
        for k, v in st.items():
            out[f"optim.{names[i]}.{k}"] = v.detach().cpu().contiguous()
    return save(out, metadata={"epochs_done": str(int(epochs_done))})


def optim_state(bank, blob: bytes, param_groups: list) -> dict:
    """`optim_bytes` back into an optimizer state dict for an AdamW over bank.parameters()."""
    from safetensors.torch import load

    idx = {n: i for i, (n, _) in enumerate(bank.named_parameters())}
    state: dict = {}
    for key, v in load(blob).items():
        name, _, what = key[len("optim."):].rpartition(".")
        state.setdefault(idx[name], {})[what] = v
    return {"state": state, "param_groups": param_groups}


def _optim_epoch(blob: bytes) -> int | None:
    import json
    import struct

    n = struct.unpack("<Q", blob[:8])[0]
    meta = json.loads(blob[8:8 + n]).get("__metadata__", {})
    return int(meta["epochs_done"]) if "epochs_done" in meta else None


# -- the worker -----------------------------------------------------------------------------

def _make_bank(grammar, suite, data, settings: BankSettings, quantize: bool):
    """The bank `new_bank` builds (same tensors and keys), as a QuantSuperNet: simulated
    quantization when `quantize`, and candidate structures built off the global RNG."""
    from nasmt.quant.supernet import QuantSuperNet

    bank = QuantSuperNet.for_suite(grammar, suite, data, n_samples=settings.n_samples, seed=settings.seed,
                                   split=settings.split)
    bank.quantize = bool(quantize)
    return bank


def _shard(data, rank: int, world: int):
    if world == 1:
        return data
    return replace(data, x={**data.x, "train": data.x["train"][rank::world]},
                   y={**data.y, "train": {k: v[rank::world] for k, v in data.y["train"].items()}})


def _digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _worker(cfg: dict) -> None:
    """Ray Train's train_loop_per_worker (module level: importable on any node)."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    torch.set_num_threads(cfg["threads"])
    ctx = ray.train.get_context()
    dev = ray.train.torch.get_device() if cfg["gpu"] else torch.device("cpu")
    get = lambda ref: ray.get(ref) if ref is not None else None
    write = lambda blob, state, extra: ray.get(cfg["sink"].write_supernet.remote(blob, state, extra))
    run_epochs(cfg, ctx.get_world_rank(), ctx.get_world_size(), dev, get(cfg["bank_ref"]), get(cfg["optim_ref"]), write)


def _single_worker(cfg: dict) -> None:
    """`--supernet-workers 1`: a plain Ray task runs the epochs (no Ray Train, no process group)."""
    import ray
    import torch

    torch.set_num_threads(cfg["threads"])
    dev = torch.device("cuda") if cfg["gpu"] else torch.device("cpu")
    get = lambda ref: ray.get(ref) if ref is not None else None
    write = lambda blob, state, extra: ray.get(cfg["sink"].write_supernet.remote(blob, state, extra))
    run_epochs(cfg, 0, 1, dev, get(cfg["bank_ref"]), get(cfg["optim_ref"]), write)


def run_epochs(cfg: dict, rank: int, world: int, dev, bank_blob: bytes | None, optim_blob: bytes | None, write) -> None:
    """The epochs `cfg['start'] + 1 .. cfg['epochs']` on this worker; rank 0 hands each
    epoch's checkpoint to `write(bank bytes, state, {file: bytes})`."""
    import torch
    import torch.distributed as dist

    from nasmt.data import load_data_cached
    from nasmt.space.grammar import parse_grammar
    from nasmt.train.balance import Balancer, make_balancer
    from nasmt.train.loop import TrainConfig, TrainHook, plan_steps, train
    from nasmt.train.supernet import SandwichBalancer, SandwichHook

    s = cfg["settings"]
    grammar = parse_grammar(*cfg["grammar"])
    suite = cfg["suite"]
    data = load_data_cached(suite)
    shard = _shard(data, rank, world)
    settings = BankSettings(**cfg["bank"])
    bank = _make_bank(grammar, suite, data, settings, s["quantize"])
    if bank_blob is not None:
        load_bank_bytes(bank, bank_blob)
    bank.to(dev)
    carried: dict | None = None  # AdamW state of the previous epoch, in memory
    history = list(cfg["history"])
    sync = world > 1 and dist.is_available() and dist.is_initialized()

    class _AllReduce(Balancer):
        """The sandwich balancer, then the gradients averaged over the workers."""

        def __init__(self, inner):
            self.inner, self.name = inner, inner.name
            self.loss_sum, self.steps = None, 0

        def on_start(self, model, optimizer, tasks, steps_per_epoch, seed):
            super().on_start(model, optimizer, tasks, steps_per_epoch, seed)
            self.inner.on_start(model, optimizer, tasks, steps_per_epoch, seed)
            self.params = list(model.parameters())

        def backward(self, losses, step, relosses):
            loss = self.inner.backward(losses, step, relosses)
            self.loss_sum = loss.detach() if self.loss_sum is None else self.loss_sum + loss.detach()
            self.steps += 1
            if sync:
                ps = self.params
                buf = torch.zeros(sum(p.numel() for p in ps) + len(ps), device=dev)
                pos = 0
                for p in ps:
                    if p.grad is not None:
                        buf[pos:pos + p.numel()] = p.grad.reshape(-1)
                    pos += p.numel()
                buf[pos:] = torch.tensor([p.grad is not None for p in ps], dtype=buf.dtype, device=dev)
                dist.all_reduce(buf)
                reached = buf[pos:].tolist()
                pos = 0
                for k, p in enumerate(ps):
                    n = p.numel()
                    p.grad = (buf[pos:pos + n] / world).view_as(p).to(p.dtype) if reached[k] > 0 else None
                    pos += n
            return loss

        def weights(self):
            return self.inner.weights()

    class _Schedule(TrainHook):
        """Sets each step's rate (step_lr) and carries AdamW's moments across epochs."""

        def __init__(self, epoch, spe):
            self.epoch, self.spe = epoch, spe

        def _set(self, step):
            r = step_lr(s["lr"], self.epoch, cfg["epochs"], step, self.spe)
            for g in self.opt.param_groups:
                g["lr"] = r

        def on_start(self, model, optimizer):
            self.opt = optimizer
            if carried is not None:
                optimizer.load_state_dict(carried)
            elif optim_blob is not None:
                optimizer.load_state_dict(optim_state(bank, optim_blob, optimizer.state_dict()["param_groups"]))
            self._set(1)

        def on_step(self, step, total, loss):
            if step < total:
                self._set(step + 1)

    for epoch in range(cfg["start"] + 1, cfg["epochs"] + 1):
        torch.manual_seed(_batch_seed(s["seed"], rank, epoch))  # dropout masks: per rank, per epoch
        tc = TrainConfig(epochs=1, batch_size=s["batch_size"], lr=epoch_lr(s["lr"], epoch, cfg["epochs"]),
                         weight_decay=s["weight_decay"], seed=_batch_seed(s["seed"], rank, epoch), device=str(dev),
                         schedule="constant", balance=BALANCE)
        _, spe, _ = plan_steps(shard.x["train"].shape[0], tc)
        hook = SandwichHook(bank, s["n_random"], _sandwich_seed(s["seed"], epoch), s.get("distill", 0.0), suite, shard)
        sched = _Schedule(epoch, spe)
        bal = _AllReduce(SandwichBalancer(hook, make_balancer(BALANCE)))
        r = train(bank, suite, shard, tc, hooks=[hook, sched], balancer=bal)
        carried = sched.opt.state_dict()
        loss = (bal.loss_sum.float() / max(1, bal.steps)).reshape(1).to(dev)  # on the device: nccl reduces no CPU tensor
        blob = bank_bytes(bank)
        digests = [_digest(blob)]
        if sync:
            dist.all_reduce(loss)
            loss /= world
            digests = [None] * world
            dist.all_gather_object(digests, _digest(blob))
        if len(set(digests)) != 1:
            raise RuntimeError(f"supernet: the workers' banks differ after epoch {epoch}: {digests}")
        if rank == 0:
            history.append({"epoch": epoch, "lr": epoch_lr(s["lr"], epoch, cfg["epochs"]), "loss": float(loss[0]),
                            "steps": r["steps"], "workers": world,
                            "candidates": r["steps"] * (2 + s["n_random"]), "train_time_s": r["train_time_s"],
                            "digests": digests})
            state = state_record(settings, epoch, {**s, "epochs": cfg["epochs"], "balance": BALANCE,
                                                   "schedule": "cosine per epoch, warm-up in epoch 1",
                                                   "optimizer_moments": True, "history": history})
            extra = {OPTIM_FILE: optim_bytes(bank, carried, epoch)}
            write(blob, state, extra)
        if sync:
            dist.barrier()  # the checkpoint is on the driver's disk before anyone goes on


# -- the driver side ---------------------------------------------------------------------------

def _check_resumable(state: dict, settings: BankSettings, wanted: dict) -> None:
    if {**asdict(BankSettings()), **state["bank"]} != asdict(settings):  # an older state.json: no `split`
        raise ValueError(f"supernet: the run's bank was sized with {state['bank']}, not {asdict(settings)}; "
                         f"it cannot resume with other settings")
    had = state.get("train", {})
    diff = [k for k in RESUME_KEYS if k in had and had[k] != wanted[k]]
    if diff:
        raise ValueError("supernet: cannot resume with other training settings: "
                         + ", ".join(f"{k} {had[k]} -> {wanted[k]}" for k in diff))


def _progress(run_dir: Path, start: int, epochs: int, say, done: threading.Event) -> None:
    """One line per finished epoch, read from state.json every POLL_S seconds, and once
    more after training ended (so the last epoch is always said, however fast it was)."""
    seen = start
    while True:
        stop = done.wait(POLL_S)
        try:
            st = read_state(run_dir)
        except (OSError, ValueError):
            st = None
        for h in (st or {}).get("train", {}).get("history", []):
            if h["epoch"] > seen:
                seen = h["epoch"]
                say(f"supernet: epoch {seen}/{epochs} loss {h['loss']:.4f} lr {h['lr']:.2e} "
                    f"({h['candidates']} candidates, {h['train_time_s']:.1f} s)")
        if stop:
            return


def train_phase(run_dir, grammar, suite, *, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                n_random: int, settings: BankSettings, workers: int = 1, cpus_per_worker: float = 1,
                gpus_per_worker: float = 0, quantize: bool = True, distill: float = 0.0, sink=None,
                say=print) -> dict:
    """Train the run's supernet to `epochs` epochs (resuming from its last checkpoint) on a
    running Ray cluster; returns the final state record (`bank.state_record`). `sink`: the
    run's TrialSink actor (started here, and stopped, when None)."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig

    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("workers", workers), ("n_random", n_random + 1)):
        if int(v) < 1:
            raise ValueError(f"supernet: {name} must be at least {1 if name != 'n_random' else 0}, "
                             f"got {int(v) - (name == 'n_random')}")
    run_dir = Path(run_dir)
    wanted = {"batch_size": int(batch_size), "lr": float(lr), "weight_decay": float(weight_decay), "seed": int(seed),
              "n_random": int(n_random), "quantize": bool(quantize), "distill": float(distill)}
    state = read_state(run_dir)
    start = 0
    if state is not None:
        _check_resumable(state, settings, wanted)
        start = int(state["epochs_done"])
        if start >= epochs:
            say(f"supernet: {start} epoch(s) trained already (asked for {epochs}); nothing to train")
            return state
        say(f"supernet: resuming after epoch {start} of {epochs}")
    bank_ref = optim_ref = None
    if state is not None:
        d = supernet_dir(run_dir)
        bank_ref = ray.put((d / BANK_FILE).read_bytes())
        p = d / OPTIM_FILE
        if p.exists() and _optim_epoch(p.read_bytes()) == start:
            optim_ref = ray.put(p.read_bytes())
        else:
            say(f"supernet: no optimizer moments for epoch {start}; AdamW restarts its moments")
    own_sink = sink is None
    if own_sink:
        from nasmt.search.sink import start_sink

        sink = start_sink(run_dir)
    cfg = {"settings": wanted, "bank": asdict(settings), "grammar": (grammar.text, grammar.file, grammar.name),
           "suite": suite, "epochs": int(epochs), "start": start, "bank_ref": bank_ref, "optim_ref": optim_ref,
           "history": (state or {}).get("train", {}).get("history", []), "sink": sink, "gpu": gpus_per_worker > 0,
           "threads": max(1, int(cpus_per_worker))}
    res = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker > 0 else {})}
    tmp = tempfile.mkdtemp(prefix="nasmt_supernet_")  # Ray Train's storage: nothing is checkpointed there
    done = threading.Event()
    watcher = threading.Thread(target=_progress, args=(run_dir, start, epochs, say, done), daemon=True)
    say(f"supernet: training epochs {start + 1}-{epochs} on {workers} worker(s)"
        f"{' with simulated quantization' if quantize else ''}")
    watcher.start()
    try:
        if int(workers) == 1:  # a plain Ray task (no DDP to set up): Ray Train only for several workers
            task = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_retries=0)(_single_worker)
            ray.get(task.remote(cfg))
            return _final(run_dir, epochs)
        from nasmt.search.oneshot.ray_train import trainer_class

        trainer = trainer_class()(
            _worker, train_loop_config=cfg,
            scaling_config=ScalingConfig(num_workers=int(workers), use_gpu=gpus_per_worker > 0,
                                         resources_per_worker=res),
            run_config=RunConfig(name="supernet", storage_path=tmp, failure_config=FailureConfig(max_failures=0)))
        result = trainer.fit()
        if result.error is not None:
            raise result.error
    finally:
        done.set()
        watcher.join()
        shutil.rmtree(tmp, ignore_errors=True)
        if own_sink:
            ray.kill(sink)
    return _final(run_dir, epochs)


def _final(run_dir: Path, epochs: int) -> dict:
    final = read_state(run_dir)
    if final is None or final["epochs_done"] < epochs:
        raise RuntimeError(f"supernet: training ended at epoch {0 if final is None else final['epochs_done']} "
                           f"of {epochs}")
    return final
