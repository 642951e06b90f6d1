"""A user's own CSV, described only by a suite file, through search and export."""

import json
from pathlib import Path

import numpy as np

from conftest import ROOT, nasmt
from nasmt.run import TrialStatus, read_trials

ROWS = 600


def _write_shop_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    age = rng.integers(18, 70, ROWS)
    plan = rng.choice(["basic", "plus", "pro"], ROWS)
    visits = rng.poisson(5, ROWS)
    churn = np.where((visits < 4) & (plan == "basic"), "yes", "no")
    spend = 10 + 3 * visits + (plan == "pro") * 20 + rng.normal(0, 2, ROWS)
    lines = ["age,plan,visits,churned,spend,segment"]
    for i in range(ROWS):
        lines.append(f"{age[i]},{plan[i]},{visits[i]},{churn[i]},{spend[i]:.2f},{'ABC'[age[i] % 3]}")
    path.write_text("\n".join(lines) + "\n")


def test_csv_suite_searches_end_to_end(tmp_path):
    _write_shop_csv(tmp_path / "shop.csv")
    suite = tmp_path / "shop.toml"
    suite.write_text(
        'name = "shop"\n[data]\nsource = "csv"\npath = "shop.csv"\nfeatures = ["age", "plan", "visits"]\n'
        '[[tasks]]\nname = "churn risk"\nkind = "binary"\ntarget = "churned"\npositive = "yes"\nmetric = "auc"\n'
        '[[tasks]]\nname = "spend"\nkind = "regression"\ntarget = "spend"\nmetric = "mae"\n'
        '[[tasks]]\nname = "segment"\nkind = "multiclass"\ntarget = "segment"\n'
    )
    out = tmp_path / "run"
    nasmt("search", "--space", ROOT / "search_spaces" / "mlp.grammar", "--tasks", suite,
          "--objectives", "mean_error,params", "--trials", 2, "--epochs", 2, "--out", out, "--sampler", "random")
    trials = read_trials(out)
    assert len(trials) == 2 and all(t.status == TrialStatus.COMPLETE for t in trials)
    assert {"churn_risk.auc", "spend.mae", "segment.accuracy", "mean_error"} <= set(trials[0].metrics)
    exp = tmp_path / "exp"
    nasmt("export", out, "--pick", "best:mean_error", "--out", exp, "--no-quantized")
    arch = json.loads((exp / "arch.json").read_text())
    assert arch["trial"] == min(trials, key=lambda t: t.metrics["mean_error"]).number
    assert [t["name"] for t in arch["tasks"]] == ["churn risk", "spend", "segment"]
    assert "churn risk" not in (exp / "model.py").read_text()  # user text never becomes code
    assert sorted(arch["per_task"]) == ["churn_risk", "segment", "spend"]
    assert any(f.startswith("plan=") for f in arch["feature_names"])
