"""MultiMNIST end to end: search, pick, test accuracy vs a plain shared-trunk baseline,
and the search's wall time vs a plain sequential loop over the same architectures.

    python benchmarks/bench_search.py [--run runs/bench-mm] [--trials 12] [--epochs 3]

Writes reports/bench_search.json. All numbers come from this run on this machine:
- the search (Ray Tune + Optuna, conv space, objectives mean_error,params) and its wall time;
- test accuracy per task and parameters of the best-mean_error and the knee trial
  (weights as trained in the search);
- a plain shared-trunk baseline (hard parameter sharing: the MultiMNIST LeNet of Sener &
  Koltun 2018, shared conv-pool-conv-pool-fc trunk, one small head per task) trained with the same budget
  (same data, epochs, batch size, optimizer, schedule), test accuracy and parameters;
- the same architectures trained one after another in a plain Python loop (no Ray, one
  thread) vs the search's wall time: ratio = search / plain loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasmt.model import ops as O  # noqa: E402
from nasmt.model.build import build  # noqa: E402
from nasmt.data import load_data  # noqa: E402
from nasmt.run import WEIGHTS_FILE, TrialStatus, load_run, read_trials, trial_dir  # noqa: E402
from nasmt.space.spec import ArchSpec  # noqa: E402
from nasmt.data.suite import load_suite  # noqa: E402
from nasmt.train import TrainConfig, evaluate, train  # noqa: E402


def baseline_net(n_out: dict) -> nn.Module:
    """Hard-parameter-sharing baseline, the MultiMNIST LeNet of Sener & Koltun (2018):
    shared conv(10, 5x5)-pool-conv(20, 5x5)-pool-fc(50); per task fc(50)-linear."""
    trunk = [nn.Sequential(
        O.ConvBNAct(1, 10, 5, 1), nn.MaxPool2d(2, 2), O.ConvBNAct(10, 20, 5, 1), nn.MaxPool2d(2, 2),
        nn.Flatten(), O.FC(20 * 7 * 7, 50),
    )]
    branches = {t: nn.Sequential(O.FC(50, 50), nn.Linear(50, k)) for t, k in n_out.items()}
    return O.MultiTaskNet(trunk, branches, {t: 1 for t in n_out})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(ROOT / "runs" / "bench-mm"))
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--suite", default=str(ROOT / "tasks" / "multimnist.toml"))
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "conv.grammar"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_search.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(a.run)
    search_wall = None
    if not (run / "run.json").exists():
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "nasmt.cli", "search", "--space", a.space, "--tasks", a.suite,
             "--objectives", "mean_error,params", "--trials", str(a.trials), "--epochs", str(a.epochs),
             "--out", str(run), "--seed", "0"],
            check=True, cwd=ROOT,
        )
        search_wall = time.perf_counter() - t0
    cfg = load_run(run)["config"]
    trials = [t for t in read_trials(run) if t.status == TrialStatus.COMPLETE]
    suite = load_suite(a.suite)
    data = load_data(suite)

    def test_metrics(model):
        m = evaluate(model, suite, data, "test")
        return {t.ident: round(m[f"{t.ident}.accuracy"], 4) for t in suite.tasks}

    from nasmt.export import choose_trial
    from safetensors.torch import load_file

    picks = {}
    for label, how in (("best_mean_error", "best:mean_error"), ("knee", "knee")):
        rec = choose_trial(run, None, how)
        spec = ArchSpec.from_json(rec.spec)
        m = build(spec)
        m.load_state_dict(load_file(str(trial_dir(run, rec.number) / WEIGHTS_FILE)))
        picks[label] = {
            "trial": rec.number,
            "params": rec.metrics["params"],
            "flops": rec.metrics["flops"],
            "val_mean_error": round(rec.metrics["mean_error"], 4),
            "test_accuracy": test_metrics(m),
            "arch": spec.describe(),
        }
    tc = TrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=0)
    torch.manual_seed(0)
    base = baseline_net(data.n_outputs)
    t0 = time.perf_counter()
    train(base, suite, data, tc)
    base_train_s = time.perf_counter() - t0
    from nasmt.model.cost import cost

    baseline = {
        "params": sum(p.numel() for p in base.parameters()),
        "flops": cost(base, data.input_shape)["flops"],
        "test_accuracy": test_metrics(base),
        "train_s": round(base_train_s, 1),
        "arch": "LeNet (Sener & Koltun 2018): conv(10,k5)-pool-conv(20,k5)-pool-fc(50) shared; per task fc(50)-linear",
    }
    # plain sequential loop over the same architectures, same budget
    t0 = time.perf_counter()
    for rec in trials:
        spec = ArchSpec.from_json(rec.spec)
        torch.manual_seed(rec.number)
        m = build(spec)
        train(m, suite, data, TrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=rec.number))
        evaluate(m, suite, data, "val")
    plain_s = time.perf_counter() - t0
    res = {
        "benchmark": "bench_search",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "suite": suite.name,
        "budget": {"epochs": cfg["epochs"], "n_train": int(data.x["train"].shape[0]), "n_test": int(data.x["test"].shape[0])},
        "search": {"trials": len(trials), "wall_s": round(search_wall, 1) if search_wall else None,
                   "sum_trial_s": round(sum(t.timings["total_s"] for t in trials), 1)},
        "picks": picks,
        "baseline_shared_trunk": baseline,
        "plain_loop_s": round(plain_s, 1),
        "ratio_search_wall_vs_plain_loop": round(search_wall / plain_s, 3) if search_wall else None,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
