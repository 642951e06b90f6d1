"""The committed reports/bench_oneshot_tau.json (benchmarks/bench_oneshot_tau.py): every
correlation it states is the one of the values it stores, and `--table` prints it."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from nasmt.search.oneshot.check import kendall_tau

REPORT = ROOT / "reports" / "bench_oneshot_tau.json"


def _vals(d: dict) -> dict[int, float]:
    return {int(k): float(v) for k, v in d.items()}


def test_stated_correlations_are_those_of_the_stored_values():
    r = json.loads(REPORT.read_text())
    assert set(r["cells"]) >= {"people", "fair", "multimnist"}
    for name, c in r["cells"].items():
        assert c["n"] == 30 and len(c["candidates"]) == 30, name
        scratch = {k: _vals(v) for k, v in c["scratch"].items()}
        assert "own" in scratch and "own2" in scratch and all(len(v) == 30 for v in scratch.values()), name
        for pair, got in c["noise_ceiling"].items():
            p, q = pair.split("_vs_")
            keys = sorted(scratch[p])
            assert got["kendall_tau"] == kendall_tau([scratch[p][k] for k in keys], [scratch[q][k] for k in keys])
        sides = {"run": _vals(c["inherited_run"]["values"])} | {v: _vals(x["values"]) for v, x in c["variants"].items()}
        for inh, row in c["tau"].items():
            for sc, got in row.items():
                keys = sorted(set(sides[inh]) & set(scratch[sc]))
                assert got["n"] == len(keys)
                assert got["kendall_tau"] == kendall_tau([sides[inh][k] for k in keys], [scratch[sc][k] for k in keys])
        assert c["base_vs_run_max_abs_diff"] < 1e-6, name  # the variant `base` reproduces the run's scores


def test_table_prints():
    out = subprocess.run([sys.executable, "benchmarks/bench_oneshot_tau.py", "--table"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert "own_vs_own2" in out and "noise ceiling" in out and "| e12-s1 |" in out and "| e24-s1 |" in out
