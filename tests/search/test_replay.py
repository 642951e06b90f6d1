"""Every genome a search recorded replays, under the run's own grammar (from run.json),
to the identical ArchSpec: same hash, same JSON."""

from __future__ import annotations

from nasmt.data.suite import suite_from_json
from nasmt.run import TrialStatus, load_run, read_trials
from nasmt.space.derive import replay
from nasmt.space.grammar import parse_grammar
from nasmt.space.spec import ArchSpec


def _replays(run_dir) -> int:
    run = load_run(run_dir)
    g = parse_grammar(run["grammar"]["text"], file=run["grammar"]["file"])
    suite = suite_from_json(run["suite"])
    n = 0
    for rec in read_trials(run_dir):
        if rec.spec is None:
            continue
        spec = ArchSpec.from_json(rec.spec)
        again = replay(g, rec.genome, suite.tasks, spec.input_shape, {b.task: b.out for b in spec.branches})
        assert again.hash == rec.arch_hash == spec.hash, rec.number
        assert again.to_json() == rec.spec
        n += rec.status == TrialStatus.COMPLETE
    return n


def test_every_recorded_genome_replays_to_the_same_hash(tiny_run):
    assert _replays(tiny_run) >= 4
