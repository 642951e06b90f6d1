"""`nasmt search --oneshot`: the three phases of a one-shot search, in one run directory.

1. Train the supernet (`oneshot.train.train_phase`: sandwich rule, Ray Train workers,
   a checkpoint after every epoch through the sink actor; a resumed run goes on from the
   last finished epoch).
2. Score candidates with inherited weights: the sampler asks `--candidate-batch` genomes
   at a time (define-by-run over the grammar, as for trials), Ray tasks score them on the
   bank (put in Ray's object store once), and the driver appends each candidate's record
   to trials.jsonl and tells Optuna, until `--trials` candidates are complete. Decisions
   weight sharing cannot judge (the grammar's `train` rule: balancing, lr, wd) are drawn
   and recorded but not judged here: the supernet trains with equal balancing and the
   run's `--lr`; phase 3 applies each candidate's own.
3. Finish the front (`--final-epochs N`): every feasible Pareto candidate is fine-tuned
   from its inherited weights (`--finish finetune`, the default) or trained from scratch
   (`--finish scratch`) for N epochs and recorded as its `final` record.

Resume (`nasmt search --resume RUN`): the supernet continues from its checkpoint;
candidates already recorded are never scored again; candidates asked but not recorded
when the driver died are closed as interrupted and their genomes asked again first, so
none is lost.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from nasmt.errors import UserError
from nasmt.run import TrialRecord, TrialStatus, append_record, read_trials
from nasmt.search.config import SearchConfig

REQUEUED_ATTR = "nasmt_requeued_from"  # user attr of a genome asked again after its first ask was interrupted
MAX_BANK_PARAMS = 100_000_000  # a bank above this (fp32: 400 MB per copy) is refused


def run_oneshot(cfg: SearchConfig, resume: bool = False, done: int = 0, failed: int = 0) -> Path:
    """The one-shot search (see the module docstring); `done`/`failed` as counted by
    `prepare_resume` when resuming."""
    import ray

    from nasmt.search.driver import _say, _summary, prepare, start_run
    from nasmt.search.oneshot.bank import BankSettings, Recalibration, read_state
    from nasmt.search.oneshot.train import train_phase
    from nasmt.search.sink import start_sink

    out = Path(cfg.out)
    say = _say(cfg.quiet)
    grammar, suite, objectives, data = prepare(cfg)
    settings = BankSettings(seed=cfg.seed, split=cfg.supernet_split)
    if not resume:
        check_bank_size(grammar, suite, data, settings)
    if done >= cfg.trials and (read_state(out) or {}).get("epochs_done", 0) >= cfg.supernet_epochs:
        say(f"{out}: already has {done} complete candidates of {cfg.trials}; nothing to do")
        return out
    conc = start_run(cfg, out, grammar, suite, objectives, resume)
    sink = start_sink(out)
    t0 = time.time()
    try:
        say(f"nasmt search --oneshot: supernet of {grammar.name} on {suite.name}, {cfg.supernet_epochs} epoch(s), "
            f"{cfg.supernet_workers} worker(s)")
        state = train_phase(out, grammar, suite, epochs=int(cfg.supernet_epochs), batch_size=cfg.batch_size,
                            lr=cfg.lr, weight_decay=1e-4, seed=cfg.seed, n_random=cfg.supernet_random,
                            settings=settings, workers=cfg.supernet_workers, cpus_per_worker=cfg.cpus_per_trial,
                            gpus_per_worker=cfg.gpus_per_trial, distill=cfg.supernet_distill, sink=sink, say=say)
        t1 = time.time()
        say(f"supernet trained ({state['epochs_done']} epoch(s), {t1 - t0:.0f} s); scoring {cfg.trials - done} "
            f"candidate(s), {conc} task(s) at a time")
        score_candidates(cfg, out, grammar, suite, objectives, data, state, conc, done, failed, say,
                         Recalibration(seed=cfg.seed), resume)
    finally:
        ray.kill(sink)
    _summary(cfg, out, objectives, time.time() - t0, say)
    if cfg.final_epochs:
        from nasmt.search.finalize import finalize_run

        finalize_run(out, cfg.final_epochs, say=say)
    return out


def bank_params(grammar, suite, data, settings) -> int:
    """The supernet's parameter count, counted on the meta device: shapes only, nothing
    allocated or initialized (a refused 400M-parameter bank took 5 s and 1.6 GB to count
    for real)."""
    import torch

    from nasmt.search.oneshot.bank import new_bank

    with torch.device("meta"):
        return sum(p.numel() for p in new_bank(grammar, suite, data, settings).parameters())


def check_bank_size(grammar, suite, data, settings) -> None:
    """One line when the grammar's supernet is too large to train and ship around."""
    n = bank_params(grammar, suite, data, settings)
    if n > MAX_BANK_PARAMS:
        raise UserError(f"--oneshot: the supernet of {grammar.file} would hold {n:,} parameters (more than "
                        f"{MAX_BANK_PARAMS:,}: its largest choices, e.g. a wide fc after a flatten of a large map); "
                        f"narrow the grammar or search without --oneshot")


def _space(grammar, suite, data):
    from nasmt.search.space import define_space

    return functools.partial(define_space, grammar_text=grammar.text, grammar_file=grammar.file,
                             tasks=tuple(t.ident for t in suite.tasks), input_shape=tuple(data.input_shape),
                             n_outputs=dict(data.n_outputs), columns=tuple(data.columns))


def requeue_interrupted(adapter, trials: list[TrialRecord]) -> int:
    """Ask again, first, the genomes of candidates that were asked but never recorded
    (closed as interrupted by resume), unless an earlier resume did already. Returns
    how many."""
    from optuna.trial import TrialState

    from nasmt.search.resume import INCOMPLETE_ATTR

    interrupted = {t.number for t in trials if t.interrupted}
    jt = adapter.study.get_trials(deepcopy=False)
    done = {t.user_attrs.get(REQUEUED_ATTR) for t in jt}
    n = 0
    for t in jt:
        if (t.number in interrupted and t.number not in done and t.state == TrialState.FAIL
                and not t.user_attrs.get(INCOMPLETE_ATTR) and t.params):
            adapter.study.enqueue_trial(dict(t.params), user_attrs={REQUEUED_ATTR: t.number}, skip_if_exists=False)
            n += 1
    return n


def score_candidates(cfg: SearchConfig, out: Path, grammar, suite, objectives, data, state: dict, conc: int,
                     done: int, failed: int, say, recal, resume: bool) -> None:
    """Phase 2: ask, score in Ray tasks, record and tell, `--candidate-batch` at a time."""
    import ray

    from nasmt.quant import COSTS_ATTR
    from nasmt.search.context import TrialContext
    from nasmt.search.driver import RESUME_SEED_STRIDE, _warm_start
    from nasmt.search.oneshot.bank import BANK_FILE, supernet_dir
    from nasmt.search.oneshot.evaluate import NOT_FITTING, put_bank, remote_evaluate_batch
    from nasmt.search.samplers import make_sampler
    from nasmt.search.searcher import CONSTRAINED_COSTS
    from nasmt.search.study import StudyAdapter

    trials = read_trials(out)
    seed = cfg.seed + (RESUME_SEED_STRIDE + len(trials) if resume else 0)  # a resumed session: fresh proposals
    sampler = make_sampler(cfg.sampler_name, seed, cfg.trials, cfg.max_bytes, cfg.max_latency_ms)
    adapter = StudyAdapter(out, objectives, sampler, _space(grammar, suite, data))
    if resume:
        n = requeue_interrupted(adapter, trials)
        if n:
            say(f"{n} candidate(s) asked before the driver died are asked again first")
    else:
        adapter.seed(*_warm_start(cfg, grammar, suite, objectives, data))
    ctx = TrialContext.from_config(cfg, grammar, suite, objectives)
    remote = remote_evaluate_batch(num_cpus=cfg.cpus_per_trial, num_gpus=cfg.gpus_per_trial)
    bank = put_bank((supernet_dir(out) / BANK_FILE).read_bytes())  # once: every task reads it from the store
    epochs = int(state["epochs_done"])
    n_complete, n_failed, t0, scored = done, failed, time.time(), 0
    while n_complete < cfg.trials and n_failed < cfg.max_failures:
        k = min(cfg.candidate_batch, cfg.trials - n_complete)
        items = [adapter.ask() for _ in range(k)]
        chunks = [items[i::conc] for i in range(min(conc, len(items)))]
        results = ray.get([remote.remote(bank, state, ctx, chunk, recal, epochs) for chunk in chunks])
        for rj in sorted((r for rs in results for r in rs), key=lambda r: r["number"]):
            rec = TrialRecord.from_json(rj)
            append_record(out, rec)  # the record first: a resume finds it and tells Optuna
            if rec.status == TrialStatus.COMPLETE:
                n_complete += 1
                adapter.tell_complete(rec.number, rec.metrics, COSTS_ATTR, CONSTRAINED_COSTS)
            else:
                n_failed += rec.error != NOT_FITTING  # the bank's gap, not the architecture's
                adapter.tell_failed(rec.number)
        scored += len(items)
        say(f"  {n_complete} of {cfg.trials} candidates scored ({scored / max(time.time() - t0, 1e-9):.1f}/s)")
    if n_failed >= cfg.max_failures:
        say(f"stopped: {n_failed} candidates failed (--max-failures {cfg.max_failures})")
