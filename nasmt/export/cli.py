"""`nasmt export` and `nasmt predict`: their options and commands. nasmt/cli.py registers
them with `add_parsers(sub)`; imports stay lazy (importing this module loads no torch)."""

from __future__ import annotations

import sys
from pathlib import Path

from nasmt.errors import UserError


def cmd_export(a) -> None:
    if a.controllable:
        given = [f for f, v in (("--trial", a.trial), ("--pick", a.pick), ("--retrain-epochs", a.retrain_epochs))
                 if v is not None]
        if given:
            raise UserError(f"{given[0]}: not allowed with --controllable (it exports every candidate of the front)")
        from nasmt.export.controllable import export_controllable

        out = export_controllable(Path(a.run), Path(a.out), objectives=a.objectives, quantized=not a.no_quantized,
                                  onnx=not a.no_onnx, force=a.force, max_candidates=a.max_candidates)
    else:
        if a.max_candidates is not None:
            raise UserError("--max-candidates: only with --controllable")
        from nasmt.export.write import export_run

        out = export_run(Path(a.run), Path(a.out), trial=a.trial, pick=a.pick, retrain_epochs=a.retrain_epochs,
                         objectives=a.objectives, quantized=not a.no_quantized, onnx=not a.no_onnx, force=a.force)
    print(out)


def cmd_predict(a) -> None:
    from nasmt.export.controllable_predict import describe, parse_pairs, predict_controllable

    folder, out = Path(a.export), Path(a.out)
    budget, preference = parse_pairs(a.budget, "--budget"), parse_pairs(a.preference, "--preference")
    tasks = [t.strip() for t in a.tasks.split(",")] if a.tasks is not None else None
    from nasmt.export.controllable import is_controllable

    if not is_controllable(folder):
        given = [f for f, v in (("--budget", budget), ("--preference", preference), ("--tasks", tasks)) if v is not None]
        if given:
            raise UserError(f"{given[0]}: only for a controllable export (`nasmt export RUN --controllable`); "
                            f"{folder} is not one")
        from nasmt.export.predict import predict_file

        warned = predict_file(folder, Path(a.input), out, force=a.force)
    else:
        if out.is_dir():
            raise UserError(f"--out {out}: is a directory")
        if out.exists() and not a.force:
            raise UserError(f"--out {out}: exists; pass --force to overwrite it")
        if not out.parent.is_dir():
            raise UserError(f"--out {out}: folder {out.parent} does not exist")
        chosen, warned = predict_controllable(folder, Path(a.input), out, budget, preference, tasks)
        print(f"selected {describe(chosen)}")
    for line in warned:
        print(f"nasmt: warning: {line}", file=sys.stderr)
    print(a.out)


def add_parsers(sub) -> None:
    e = sub.add_parser("export", help="export a trial as standalone PyTorch code + weights",
                       description="Export one trial (or, with --controllable, the whole front of a one-shot run on "
                       "shared weights, the trade-off chosen at run time) as standalone PyTorch code + weights.")
    e.add_argument("run", help="run directory written by `nasmt search`")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--trial", type=int, default=None, help="trial number")
    g.add_argument("--pick", default=None, help="knee | best:<objective> (from the Pareto set)")
    e.add_argument("--out", required=True, help="folder to write model.py, weights, arch.json into")
    e.add_argument("--controllable", action="store_true",
                   help="one-shot runs: export every feasible candidate of the front on one set of shared weights "
                   "(model.py's net.select(budget=..., preference=..., tasks=...) chooses at run time)")
    e.add_argument("--max-candidates", type=int, default=None,
                   help="--controllable: keep at most this many candidates of the front (the cheapest, each task's "
                   "best, then the most spread out)")
    e.add_argument("--retrain-epochs", type=float, default=None, help="retrain the architecture this long first")
    e.add_argument("--objectives", default=None,
                   help="objectives for --pick (default: the run's); with --controllable the front's (default: every "
                   "task's error and the run's costs)")
    e.add_argument("--no-quantized", action="store_true", help="skip the quantized artifact(s)")
    e.add_argument("--no-onnx", action="store_true", help="skip the ONNX file(s)")
    e.add_argument("--force", action="store_true",
                   help="write into --out even when it is a non-empty folder that holds no earlier export")
    e.set_defaults(fn=cmd_export)

    pr = sub.add_parser("predict", help="predictions of an export for raw input rows",
                        description="Encode raw rows (CSV; image exports: a .npy of uint8 images) with the export's "
                        "preprocessing.json and write per-task labels, probabilities or values as CSV. On a "
                        "controllable export, --budget / --preference / --tasks choose the candidate first.")
    pr.add_argument("export", help="folder written by `nasmt export`")
    pr.add_argument("--input", required=True, help="raw rows: a CSV file with the suite's feature columns (or .npy images)")
    pr.add_argument("--out", required=True, help="CSV file to write the predictions to")
    pr.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    pr.add_argument("--budget", default=None, metavar="COST=LIMIT,...",
                    help="controllable exports: limits on latency_ms, params, flops, bytes, size_bytes, e.g. "
                    "latency_ms=0.5,params=50000")
    pr.add_argument("--preference", default=None, metavar="TASK=WEIGHT,...",
                    help="controllable exports: task weights (>= 0), e.g. left=0.8,right=0.2 (default: equal)")
    pr.add_argument("--tasks", default=None, metavar="TASK,...",
                    help="controllable exports: run only these tasks (the trunk prefix and branches they need)")
    pr.set_defaults(fn=cmd_predict)

