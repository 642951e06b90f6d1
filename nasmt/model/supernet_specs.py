"""Derivations the supernet needs: random ones (a trial without a study), the largest and
smallest architecture of a grammar, and the trace of where each op of a spec was derived
(its derivation path: the bank's position key)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from nasmt.model.build import build
from nasmt.space import derive as D
from nasmt.space.nodes import Grammar
from nasmt.space.spec import ArchSpec


class RandomTrial:
    """A trial answering every decision uniformly at random (as optuna's RandomSampler
    does: categoricals uniform, a weighted rule's float uniform in [0, 1) so the PCFG's
    weights hold), without a study: cheap enough to draw per training step."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def suggest_categorical(self, name, choices):
        return self.rng.choice(list(choices))

    def suggest_float(self, name, low, high):
        return self.rng.uniform(low, high)


def _order(v) -> float | None:
    """A choice's size: numbers as they are, 'last' (a tap) deepest; None for labels."""
    if v == "last":
        return math.inf
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class ExtremeTrial:
    """A trial taking the largest ('max') or smallest ('min') of every numeric choice
    (widths, kernels, expert counts, repetition counts, taps: 'last' is the deepest), the
    first of label choices and of dropout rates, and the first alternative of a rule
    unless `fixed` names it."""

    def __init__(self, mode: str, fixed: dict | None = None):
        assert mode in ("max", "min")
        self.mode, self.fixed = mode, dict(fixed or {})

    def suggest_categorical(self, name, choices):
        if name in self.fixed:
            return self.fixed[name]
        keys = [_order(c) for c in choices]
        if name.endswith(".p") or any(k is None for k in keys):
            return choices[0]
        pick = max if self.mode == "max" else min
        return choices[keys.index(pick(keys))]

    def suggest_float(self, name, low, high):
        return self.fixed.get(name, low)


class _TraceWalker(D._Walker):
    """The derivation walker, recording each op's path and the rule of each `.alt` decision."""

    def __init__(self, g, rec):
        super().__init__(g, rec)
        self.paths: list[str] = []
        self.alt_rules: dict[str, str] = {}

    def choose(self, name, path):
        if len(self.g.rules[name].alts) > 1:
            self.alt_rules[f"{path}.alt"] = name
        return super().choose(name, path)

    def op(self, op, path):
        self.paths.append(path)
        return super().op(op, path)


@dataclass
class Trace:
    positions: dict  # (unit group, op index in the group) -> derivation path of the op
    alt_rules: dict  # `.alt` decision -> the rule it chooses an alternative of


def trace(grammar: Grammar, spec: ArchSpec) -> Trace:
    """Replays `spec.genome` on `grammar` (as `derive` walks it: trunk, branches, joined
    groups) and returns where each op of the spec was derived. ValueError if the spec is
    not a derivation of this grammar."""
    import optuna

    if not spec.genome and any(len(r.alts) > 1 for r in grammar.rules.values()):
        raise ValueError("supernet: the spec has no genome; it must be a derivation of the bank's grammar")
    w = _TraceWalker(grammar, D._Recorder(optuna.trial.FixedTrial(spec.genome_dict)))
    pos: dict = {}
    stages = w.stages()
    paths, k = w.paths[:], 0
    for i, ops in enumerate(stages):
        for j, o in enumerate(ops):
            if i < len(spec.stages) and (j >= len(spec.stages[i].ops) or spec.stages[i].ops[j] != o):
                raise ValueError(f"supernet: stage {i + 1} of the spec is not its genome's derivation")
            pos[(f"trunk.{i}", j)] = paths[k]
            k += 1
    for b in spec.branches:
        w.paths.clear()
        ops: list = []
        w.rule("branch", f"branch.{b.task}", ops, "layer")
        kept = [(o, p) for (tag, o), p in zip(ops, w.paths) if o.op not in ("tap", "join")]
        if tuple(o for o, _ in kept) != (*b.layers, *b.head):
            raise ValueError(f"supernet: branch {b.task} of the spec is not its genome's derivation")
        for j, (_, p) in enumerate(kept):
            pos[(f"branches.{b.task}", j)] = p
        pos[(f"branches.{b.task}", "out")] = f"branch.{b.task}.out"
    joined = {b.group for b in spec.branches if b.group is not None}
    for label in [g for g in D.group_labels(grammar) if g in joined]:
        w.paths.clear()
        ops = []
        w.rule("group", f"group.{label}", ops, "layer")
        kept = [p for (_, o), p in zip(ops, w.paths) if o.op != "tap"]
        for j, p in enumerate(kept):
            pos[(f"groups.{label}", j)] = p
    return Trace(pos, w.alt_rules)


def random_specs(grammar: Grammar, tasks, input_shape, n_outputs, n: int, seed: int = 0,
                 columns: tuple[int, ...] = ()) -> list[ArchSpec]:
    """`n` random derivations (RandomTrial, seeded); `columns`: the tabular column layout."""
    rng = random.Random(seed)
    return [D.derive(grammar, RandomTrial(rng), tasks, input_shape, n_outputs, columns) for _ in range(n)]


def n_params(spec: ArchSpec) -> int:
    """Parameters of `build(spec)`, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build(spec).parameters())


def extreme_spec(grammar: Grammar, tasks, input_shape, n_outputs, mode: str = "max", columns: tuple[int, ...] = ()) -> ArchSpec:
    """The largest ('max') or smallest ('min') architecture of the grammar: every numeric
    choice at its max / min (ExtremeTrial), and each rule's alternative chosen greedily, in
    derivation order, as the one giving the most / fewest parameters (passes until no
    alternative decision is new or changes)."""
    fixed: dict = {}
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    done: set = set()
    for _ in range(8):
        spec = D.derive(grammar, ExtremeTrial(mode, fixed), tasks, input_shape, n_outputs, columns)
        todo = [(d, r) for d, r in trace(grammar, spec).alt_rules.items() if d not in done]
        if not todo:
            return spec
        for d, rname in todo:
            rule = grammar.rules[rname]
            best, best_n = None, None
            for a in rule.alts:
                trial = {**fixed, d: rule.answer(a.label)}
                s = D.derive(grammar, ExtremeTrial(mode, trial), tasks, input_shape, n_outputs, columns)
                k = n_params(s)
                if best_n is None or better(k, best_n):
                    best, best_n = rule.answer(a.label), k
            fixed[d] = best
            done.add(d)
    return D.derive(grammar, ExtremeTrial(mode, fixed), tasks, input_shape, n_outputs, columns)


