"""nasmt command line: a thin layer over the public API.

Every user mistake is a UserError: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasmt.baselines.cli import add_parser as add_baselines_parser  # light: torch is imported when it runs
from nasmt.export.cli import add_parsers as add_export_parsers  # light too
from nasmt.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPACE = ROOT / "search_spaces" / "conv.grammar"
DEFAULT_SUITE = ROOT / "tasks" / "multimnist.toml"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line (no usage block), exit 2
        print(f"nasmt: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _add_search_args(p: argparse.ArgumentParser, quick: bool = False):
    p.add_argument("--space", default=str(DEFAULT_SPACE) if quick else None, required=not quick,
                   help="grammar file (search_spaces/*.grammar)" + (" (default %(default)s)" if quick else ""))
    p.add_argument("--tasks", default=str(DEFAULT_SUITE) if quick else None, required=not quick,
                   help="task suite file (tasks/*.toml)" + (" (default %(default)s)" if quick else ""))
    p.add_argument("--out", required=not quick, default="runs/quickstart" if quick else None, help="run directory to create" + (" (default %(default)s)" if quick else ""))
    p.add_argument("--objectives", default="mean_error,params",
                   help="comma-separated objectives, each optionally :min or :max "
                   "(mean_error, params, flops, size_bytes, latency_ms, predicted_latency_ms, <task>.<metric>, <task>.error; "
                   "default %(default)s)")
    p.add_argument("--trials", type=int, default=12 if quick else 16, help="number of complete trials wanted (default %(default)s)")
    p.add_argument("--sampler", default="auto", choices=["auto", "random", "tpe", "nsga2", "evolution"],
                   help="auto, random, tpe, nsga2, evolution (default %(default)s: random below 100 trials, tpe from 100 on, --oneshot too; measured by benchmarks/bench_samplers.py)")
    p.add_argument("--epochs", type=float, default=3.0 if quick else 1.0, help="training budget per trial, in epochs (default %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="training budget in optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size (default %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3,
                   help="learning rate, unless the grammar's train rule sets one (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial (default %(default)s)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help="CPUs per trial, also its torch threads (default %(default)s)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPU share per trial, e.g. 0.25 (default %(default)s)")
    p.add_argument("--address", default=None, help="join an existing Ray cluster (HOST:PORT) instead of starting one; "
                   "with --resume: continue the run there from now on (default: the cluster it recorded)")
    p.add_argument("--storage", default=None, metavar="URI",
                   help="where Ray Tune keeps its own files: a path (NFS) or a pyarrow URI such as s3://bucket/prefix "
                   "(default RUN/ray; nasmt's records always go to the run directory)")
    p.add_argument("--max-concurrent", type=int, default=None, help="cap on trials running at once")
    p.add_argument("--trial-timeout", type=float, default=None, help="seconds of training after which a trial fails")
    p.add_argument("--max-failures", type=int, default=10, help="stop the search cleanly after this many failed trials (default %(default)s)")
    p.add_argument("--early-stop", action="store_true", help="the same as --scheduler asha")
    p.add_argument("--scheduler", default="fifo", choices=["fifo", "asha", "mo-asha"],
                   help="fifo: full budget for every trial; asha: stop weak trials early on validation mean_error; "
                   "mo-asha: stop early by non-dominated rank over all the objectives (default %(default)s)")
    p.add_argument("--final-epochs", type=float, default=None,
                   help="after the search, retrain every feasible Pareto trial this many epochs (see `nasmt finalize`)")
    p.add_argument("--min-epochs", type=int, default=1, help="first rung of asha / mo-asha, in epochs (default %(default)s)")
    p.add_argument("--reduction-factor", type=float, default=2.0, help="asha / mo-asha: 1/rf of the trials go on at each rung (default %(default)s)")
    p.add_argument("--max-bytes", type=int, default=None, help="hard budget on the deployed size_bytes (Optuna constraint)")
    p.add_argument("--max-latency-ms", type=float, default=None,
                   help="hard budget on latency (measured if --measure-latency or a latency_ms objective, else predicted)")
    p.add_argument("--latency-batch", type=int, default=1, help="batch size for latency measurement and prediction (default %(default)s)")
    p.add_argument("--qat-steps", type=int, default=0, help="quantization-aware fine-tune steps for quantized policies (default %(default)s)")
    p.add_argument("--measure-latency", action="store_true", help="measure the deployable artifact's latency in every trial")
    p.add_argument("--enqueue", nargs="+", default=(), metavar="FILE",
                   help="architectures to evaluate first: an exported arch.json, a trial's spec.json or a genome JSON")
    p.add_argument("--warm-start", nargs="+", default=(), metavar="RUN",
                   help="seed the study with these earlier runs' complete trials")
    p.add_argument("--affinity", default=None, metavar="DIR",
                   help="a folder written by `nasmt affinity`: the first quarter of the trials follow its task "
                   "grouping (group and tap decisions); needs a grammar with task groups (search_spaces/mtl.grammar)")
    p.add_argument("--oneshot", action="store_true",
                   help="one-shot search: train one weight-sharing supernet, then score --trials candidates with "
                   "inherited weights (thousands per training), then finish the front with --final-epochs")
    p.add_argument("--supernet-epochs", type=int, default=4, help="--oneshot: epochs of sandwich-rule supernet training (default %(default)s)")
    p.add_argument("--supernet-split", action="store_true", help="--oneshot: key the weights of task-group and branch ops by the features they read too (tapped stage, pooling, own layer): less sharing of columns that mean different things; measured in benchmarks/bench_oneshot_tau.py")
    p.add_argument("--supernet-workers", type=int, default=1, help="--oneshot: Ray Train workers training the supernet data-parallel (default %(default)s)")
    p.add_argument("--supernet-distill", type=float, default=0.0, help="--oneshot: in-place distillation a in [0, 1]: the smaller candidates of a step learn from (1 - a) x labels + a x the largest one's predictions (default %(default)s)")
    p.add_argument("--supernet-random", type=int, default=2,
                   help="--oneshot: random candidates per training step besides the largest and smallest "
                   "(default %(default)s)")
    p.add_argument("--candidate-batch", type=int, default=64,
                   help="--oneshot: candidates asked and scored per round (default %(default)s)")
    p.add_argument("--finish", default="finetune", choices=["finetune", "scratch"],
                   help="--oneshot: --final-epochs fine-tunes the front from inherited weights or trains it from "
                   "scratch (default %(default)s)")
    p.add_argument("--inject-fault", dest="fault", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--baselines", action="store_true",
                   help="after the search, train the standard multi-task references (nasmt baselines) into RUN")


def _search_config(a):
    from nasmt.search import SearchConfig

    return SearchConfig(
        space=a.space, tasks=a.tasks, out=a.out, objectives=a.objectives, trials=a.trials, sampler=a.sampler,
        epochs=a.epochs, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
        cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial, address=a.address,
        max_concurrent=a.max_concurrent, trial_timeout=a.trial_timeout, max_failures=a.max_failures,
        early_stop=a.early_stop, fault=a.fault, quiet=a.quiet, scheduler=a.scheduler, min_epochs=a.min_epochs,
        reduction_factor=a.reduction_factor, final_epochs=a.final_epochs,
        max_bytes=a.max_bytes, max_latency_ms=a.max_latency_ms, latency_batch=a.latency_batch,
        qat_steps=a.qat_steps, measure_latency=a.measure_latency, storage=a.storage,
        enqueue=tuple(a.enqueue), warm_start=tuple(a.warm_start), affinity=a.affinity,
        oneshot=a.oneshot, supernet_epochs=a.supernet_epochs, supernet_workers=a.supernet_workers,
        supernet_random=a.supernet_random, candidate_batch=a.candidate_batch, finish=a.finish, supernet_distill=a.supernet_distill, supernet_split=a.supernet_split,
    )


def cmd_validate(a):
    from nasmt.space.grammar import load_grammar
    from nasmt.space.validate import check_compatible
    from nasmt.space.nodes import Op
    from nasmt.space.vocab import SOFT_OPS

    for f in a.grammars:
        g = load_grammar(f)
        if a.tasks:
            from nasmt.data.suite import load_suite

            s = load_suite(a.tasks)
            check_compatible(g, s.is_image, s.file)
        n_dec = sum(len(r.alts) > 1 for r in g.rules.values())
        ops = {it.atom.name for r in g.rules.values() for a in r.alts for it in a.items if isinstance(it.atom, Op)}
        sharing = ["hard"] + [f for f in SOFT_OPS if f in ops] + (["tree"] if "group" in g.rules else [])
        extra = f", sharing {'|'.join(sharing)}" if len(sharing) > 1 else ""
        extra += ", training searched" if "train" in g.rules else ""
        print(f"{f}: ok ({len(g.rules)} rules, {n_dec} with alternatives, quantization "
              f"{'searched' if g.has_quant else 'fp32'}{extra})")


def cmd_sample(a):
    import optuna

    from nasmt.model.build import build
    from nasmt.model.cost import cost
    from nasmt.data import load_data
    from nasmt.space.derive import derive
    from nasmt.space.grammar import load_grammar
    from nasmt.space.validate import check_compatible
    from nasmt.data.suite import load_suite

    if a.n < 1:
        raise UserError(f"-n: must be at least 1 (got {a.n})")
    g = load_grammar(a.grammar)
    suite = load_suite(a.tasks)
    check_compatible(g, suite.is_image, suite.file)
    data = load_data(suite)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=a.seed))
    for i in range(a.n):
        t = study.ask()
        spec = derive(g, t, suite.tasks, data.input_shape, data.n_outputs, data.columns)
        c = cost(build(spec), spec.input_shape)
        if a.json:
            import json

            print(json.dumps({**spec.to_json(), "params": c["params"], "flops": c["flops"]}, sort_keys=True))
        else:
            print(f"# sample {i}: {c['params']:,} params, {c['flops']:,} FLOPs")
            print(spec.describe())
        study.tell(t, 0.0)


def cmd_search(a):
    from nasmt.search import run_search

    if a.resume:
        from nasmt.search import SearchConfig

        # a resumed search keeps the run's own settings (run.json): refuse flags it would
        # ignore; --address may move it to another cluster (the recorded one is gone, or
        # came back at another address)
        defaults = vars(build_parser().parse_args(["search", "--resume", a.resume]))
        given = [k for k, v in vars(a).items() if k not in ("resume", "quiet", "fn", "address") and v != defaults.get(k)]
        if given:
            flag = "--" + {"fault": "inject-fault"}.get(given[0], given[0]).replace("_", "-")
            raise UserError(f"{flag}: not allowed with --resume (a resumed search keeps the settings in {a.resume}/run.json)")
        run_search(SearchConfig(space="", tasks="", out=a.resume, quiet=a.quiet, address=a.address), resume=True)
        return
    for need in ("space", "tasks", "out"):
        if getattr(a, need) is None:
            raise UserError(f"--{need}: required (or --resume RUN to continue a search)")
    _search_and_baselines(a)


def _search_and_baselines(a) -> Path:
    from nasmt.search import run_search

    cfg = _search_config(a)
    out = run_search(cfg)
    if a.baselines:
        from nasmt.baselines import run_baselines

        run_baselines(cfg.tasks, out, epochs=cfg.epochs, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                      seed=cfg.seed, quiet=cfg.quiet, device="cuda" if cfg.gpus_per_trial > 0 else "cpu")
    return out


def cmd_quickstart(a):
    from nasmt.report import write_report

    out = _search_and_baselines(a)
    path = write_report([out])
    print(f"report: {path}")


def cmd_report(a):
    from nasmt.report import write_report

    path = write_report([Path(r) for r in a.runs], out=a.output, objectives=a.objectives,
                        baselines=Path(a.baselines) if a.baselines else None)
    print(path)


def cmd_finalize(a):
    from nasmt.run import load_run
    from nasmt.search.finalize import finalize_run
    from nasmt.search.lock import hold_run_lock

    load_run(a.run)  # one line when it is not a run
    hold_run_lock(Path(a.run))  # not while a search is writing it
    finalize_run(Path(a.run), a.epochs, say=lambda m: print(m, flush=True))


def cmd_oneshot_check(a):
    from nasmt.search.oneshot.check import check_run, summary

    print(summary(Path(a.run), check_run(Path(a.run), a.n, epochs=a.epochs, seed=a.seed, say=lambda m: None, repeats=a.repeats)))


def cmd_affinity(a):
    from nasmt.report.affinity import write_affinity_html
    from nasmt.search.affinity import measure

    aff = measure(a.tasks, Path(a.out), epochs=a.epochs, steps=a.steps, every=a.every, seed=a.seed)
    write_affinity_html(aff, Path(a.out) / "affinity.html")
    k = max(len(t) for t in aff["tasks"])
    print(f"inter-task affinity (row: task stepped, column: task helped; {aff['measurements']} measurements)")
    print(" " * (k + 2) + " ".join(f"{t[:8]:>8}" for t in aff["tasks"]))
    for t, row in zip(aff["tasks"], aff["matrix"]):
        print(f"{t:>{k}}  " + " ".join(f"{v:8.4f}" for v in row))
    print("suggested groups: " + " | ".join(", ".join(g) for g in aff["groups"]))
    print(Path(a.out) / "affinity.html")


def cmd_dashboard(a):
    from nasmt.report.dashboard import serve

    if not 1 <= a.port <= 65535:
        raise UserError(f"--port: must be between 1 and 65535 (got {a.port})")
    serve([Path(r) for r in a.runs], host=a.host, port=a.port, objectives=a.objectives)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nasmt", description="Multi-task neural architecture search (Ray Tune + Optuna + Plotly).")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    _add_space_parsers(sub)
    _add_search_parsers(sub)
    _add_run_parsers(sub)
    return p


def _add_space_parsers(sub) -> None:
    v = sub.add_parser("validate", help="check grammar files", description="Parse and validate grammar files.")
    v.add_argument("grammars", nargs="+", help="grammar files to check")
    v.add_argument("--tasks", default=None, help="also check the grammar fits this task suite")
    v.set_defaults(fn=cmd_validate)

    s = sub.add_parser("sample", help="derive random architectures from a grammar")
    s.add_argument("grammar", help="grammar file to derive from")
    s.add_argument("--tasks", required=True, help="task suite file (tasks/*.toml): the tasks and input shape")
    s.add_argument("-n", type=int, default=3, help="number of derivations (default %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random sampler (default %(default)s)")
    s.add_argument("--json", action="store_true", help="one ArchSpec JSON per line")
    s.set_defaults(fn=cmd_sample)


def _add_search_parsers(sub) -> None:
    se = sub.add_parser("search", help="run a multi-objective architecture search",
                        description="Run (or --resume) a Ray Tune + Optuna search; writes a run directory.")
    _add_search_args(se)
    se.add_argument("--resume", default=None, metavar="RUN", help="continue the search in this run directory")
    for act in se._actions:
        if act.dest in ("space", "tasks", "out"):
            act.required = False
    se.set_defaults(fn=cmd_search)

    q = sub.add_parser("quickstart", help="small search on the embedded MultiMNIST suite, then a report",
                       description="Search search_spaces/conv.grammar on tasks/multimnist.toml (12 trials, 3 epochs each by default) and write the report.")
    _add_search_args(q, quick=True)
    q.set_defaults(fn=cmd_quickstart)
    add_baselines_parser(sub)
    af = sub.add_parser("affinity", help="measure inter-task affinity on a suite (Fifty et al. 2021)",
                        description="Train a small hard-shared probe network on the suite and record the lookahead "
                        "affinity of every task onto every other; writes DIR/affinity.json and a heatmap "
                        "DIR/affinity.html. Pass DIR to `search --affinity` to seed the task grouping.")
    af.add_argument("--tasks", required=True, help="task suite file (tasks/*.toml)")
    af.add_argument("--out", required=True, metavar="DIR", help="folder to write affinity.json and affinity.html into")
    af.add_argument("--epochs", type=float, default=2.0, help="training budget of the probe, in epochs (default %(default)s)")
    af.add_argument("--steps", type=int, default=None, help="budget in optimizer steps (overrides --epochs)")
    af.add_argument("--every", type=int, default=5, help="measure affinity every this many steps (default %(default)s)")
    af.add_argument("--seed", type=int, default=0, help="seed of the probe's initialization and batches (default %(default)s)")
    af.set_defaults(fn=cmd_affinity)
    f = sub.add_parser("finalize", help="retrain a run's feasible Pareto trials at the full budget",
                       description="Retrain every feasible Pareto trial of RUN from scratch for --epochs on the whole "
                       "training split; record validation and test metrics as the trial's final record.")
    f.add_argument("run", help="run directory written by `nasmt search`")
    f.add_argument("--epochs", type=float, required=True, help="training budget of each retrained trial, in epochs")
    f.set_defaults(fn=cmd_finalize)
    oc = sub.add_parser("oneshot-check", help="train random candidates of a one-shot run from scratch: does inheritance rank them right? (Kendall tau, Spearman rho; writes RUN/oneshot_check.json)")
    oc.add_argument("run", help="run directory written by `nasmt search --oneshot`")
    oc.add_argument("--n", type=int, default=30, help="candidates to train (default %(default)s)")
    oc.add_argument("--epochs", type=float, default=None, help="budget of each in epochs (default: the run's per-trial epochs / steps)")
    oc.add_argument("--seed", type=int, default=0, help="seed of the draw of candidates (default %(default)s)")
    oc.add_argument("--repeats", type=int, default=1, help="from-scratch trainings per candidate (seeds apart); 2 or more also reports the noise ceiling: tau between two from-scratch trainings (default %(default)s)")
    oc.set_defaults(fn=cmd_oneshot_check)


def _add_run_parsers(sub) -> None:
    """The commands that read a run directory (or an export): no Ray needed."""
    r = sub.add_parser("report", help="write the self-contained HTML report of runs")
    r.add_argument("runs", nargs="+", help="run directories (several: overlaid)")
    r.add_argument("--output", "-o", default=None, help="HTML file (default RUN/report.html)")
    r.add_argument("--objectives", default=None, help="objectives to plot (default: the run's)")
    r.add_argument("--baselines", default=None, metavar="DIR",
                   help="a folder holding baselines.jsonl (nasmt baselines) to draw as references")
    r.set_defaults(fn=cmd_report)

    d = sub.add_parser("dashboard", help="serve the live dashboard of runs on 127.0.0.1")
    d.add_argument("runs", nargs="+", help="run directories to show (they may still be searching)")
    d.add_argument("--host", default="127.0.0.1", help="address to bind to (default %(default)s: this machine only)")
    d.add_argument("--port", type=int, default=8765, help="TCP port (default %(default)s)")
    d.add_argument("--objectives", default=None, help="objectives to plot (default: the run's)")
    d.set_defaults(fn=cmd_dashboard)

    add_export_parsers(sub)  # export, predict: nasmt/export/cli.py


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        a.fn(a)
    except UserError as e:
        print(f"nasmt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasmt: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
