"""Inter-task affinity and task grouping: Fifty, Amid, Zhao, Yu, Anil & Finn, "Efficiently
Identifying Task Groupings for Multi-Task Learning" (TAG), NeurIPS 2021.

`AffinityProbe` trains with the plain sum of the losses and, every `every` steps, measures
the lookahead affinity on the step's batch: for each task i, an SGD step on the shared
parameters along task i's gradient alone (theta'_i = theta - lr g_i, lr the optimizer's
rate at that step), then for every task j, Z[i][j] = 1 - L_j(theta'_i) / L_j(theta): how much
i's step lowers (> 0) or raises (< 0) j's loss. `measure_affinity` trains a model with the
probe and returns the mean matrix; `suggest_groups` picks the partition of the tasks that
maximizes the total affinity inside the groups (the paper's selection criterion).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch

from nasmt.train.balance import Equal
from nasmt.train.loop import TrainConfig, plan_steps, train

METHOD = "lookahead (Fifty et al. 2021)"
EXHAUSTIVE_MAX_TASKS = 8  # exhaustive search over set partitions up to this many tasks (Bell(8) = 4140)


class AffinityProbe(Equal):
    """Equal weighting (the plain sum of the losses), plus every `every` steps
    (step % every == 0) the lookahead inter-task affinity of Fifty et al. 2021 on the batch:
    Z[i][j] = 1 - L_j(theta - lr grad_shared L_i) / L_j(theta), the lookahead an SGD step of
    the optimizer's current rate on the shared parameters, the losses recomputed by the
    loop's `relosses` without gradients. `matrix()` is the mean over the measurements."""

    name = "affinity"
    per_task_backward = True

    def __init__(self, every: int = 5, lookahead_lr: float | None = None):
        if int(every) < 1:
            raise ValueError(f"AffinityProbe: every must be >= 1 (got {every!r})")
        self.every = int(every)
        self.lookahead_lr = lookahead_lr  # None: the optimizer's current rate

    def on_start(self, model, optimizer, tasks, steps_per_epoch, seed):
        super().on_start(model, optimizer, tasks, steps_per_epoch, seed)
        k = len(self.tasks)
        self._sum = torch.zeros(k, k, dtype=torch.float64, device=self.device)
        self.measurements = 0

    def backward(self, losses, step, relosses):
        if step % self.every == 0:
            self._measure(losses, relosses)
        return super().backward(losses, step, relosses)

    def _measure(self, losses, relosses) -> None:
        lr = self.lookahead_lr if self.lookahead_lr is not None else float(self.optimizer.param_groups[0]["lr"])
        names = [n for n, _ in self.shared]
        params = [p for _, p in self.shared]
        base = torch.stack([l.detach().float() for l in losses.values()])
        base = base.clamp_min(torch.finfo(base.dtype).tiny)
        rows = []
        for li in losses.values():
            gs = torch.autograd.grad(li, params, retain_graph=True, allow_unused=True)
            over = {n: p.detach() - lr * g for n, p, g in zip(names, params, gs) if g is not None}
            with torch.no_grad():
                after = relosses(over)
                rows.append(1.0 - torch.stack([after[t].float() for t in self.tasks]) / base)
        self._sum += torch.stack(rows).double()
        self.measurements += 1

    def matrix(self) -> list[list[float]]:
        """Mean Z over the measurements (row i = the task whose step is taken, column j =
        the task it helps); NaN before any measurement."""
        if self.measurements == 0:
            return [[float("nan")] * len(self.tasks) for _ in self.tasks]
        return (self._sum / self.measurements).tolist()


def measure_affinity(model: torch.nn.Module, suite, data, cfg: TrainConfig, every: int = 5,
                     lookahead_lr: float | None = None) -> dict:
    """Train `model` in place with `cfg` (its `balance` is ignored: the probe weighs the tasks
    equally; the forward runs in float32 whatever `cfg.bf16` says, since a lookahead step of
    an AdamW-sized rate changes the weights by less than bf16 resolves) and measure the
    lookahead inter-task affinity every `every` steps. Returns
    {"tasks", "matrix" (K x K: row i = the task whose step is taken, column j = the task it
    helps), "measurements", "every", "steps", "lr", "lookahead_lr", "method"}. `lookahead_lr`:
    the SGD rate of the lookahead step (None: the optimizer's current rate; with AdamW's
    small rates the affinities are ~1e-6, so the command uses a fixed SGD-sized rate)."""
    _, _, total = plan_steps(len(data.x["train"]), cfg)
    if total < every:
        raise ValueError(f"measure_affinity: {total} training steps give no measurement every {every} steps")
    probe = AffinityProbe(every, lookahead_lr)
    r = train(model, suite, data, replace(cfg, bf16=False), balancer=probe)
    return {"tasks": [t.ident for t in suite.tasks], "matrix": probe.matrix(), "measurements": probe.measurements,
            "every": every, "steps": r["steps"], "lr": cfg.lr, "lookahead_lr": lookahead_lr, "method": METHOD}


def _partitions(k: int) -> Iterator[list[int]]:
    """Every set partition of range(k) as a restricted growth string (labels[0] = 0,
    labels[i] <= 1 + max(labels[:i])), in lexicographic order."""
    labels = [0] * k

    def rec(i: int, top: int):
        if i == k:
            yield list(labels)
            return
        for v in range(top + 2):
            labels[i] = v
            yield from rec(i + 1, max(top, v))

    if k:
        yield from rec(1, 0)


def _group_score(members: Sequence[int], Z) -> float:
    """Sum over the group's tasks of the mean affinity onto each from the other members."""
    if len(members) < 2:
        return 0.0
    return sum(sum(Z[i][j] for i in members if i != j) / (len(members) - 1) for j in members)


def suggest_groups(tasks: list[str], matrix, max_groups: int) -> list[list[str]]:
    """The partition of `tasks` into at most `max_groups` groups that maximizes the TAG score:
    each task scores the mean affinity onto it (matrix[i][j], i the stepping task, j the
    helped one) from the other members of its group, 0 alone; the total sums the tasks.
    Exhaustive over set partitions up to EXHAUSTIVE_MAX_TASKS tasks, greedy merging beyond.
    Ties go to fewer groups, then to the first partition in lexicographic order of the
    group labels. Groups list tasks in the given order, ordered by their first task."""
    k = len(tasks)
    Z = [[float(v) for v in row] for row in matrix]
    if len(Z) != k or any(len(row) != k for row in Z):
        raise ValueError(f"suggest_groups: matrix must be {k} x {k}")
    if max_groups < 1:
        raise ValueError(f"suggest_groups: max_groups must be >= 1 (got {max_groups!r})")
    if k == 0:
        return []
    if k <= EXHAUSTIVE_MAX_TASKS:
        best = None
        for labels in _partitions(k):
            ng = max(labels) + 1
            if ng > max_groups:
                continue
            groups = [[i for i in range(k) if labels[i] == g] for g in range(ng)]
            score = sum(_group_score(g, Z) for g in groups)
            if best is None or score > best[0] + 1e-12 or (abs(score - best[0]) <= 1e-12 and ng < len(best[1])):
                best = (score, groups)
        groups = best[1]
    else:
        groups = _greedy(k, Z, max_groups)
    return [[tasks[i] for i in g] for g in sorted((sorted(g) for g in groups), key=lambda g: g[0])]


def _greedy(k: int, Z, max_groups: int) -> list[list[int]]:
    """From singletons, merge the pair of groups with the largest gain in score while it is
    not negative (as in the exhaustive search, a tie goes to fewer groups) or there are more
    than `max_groups` groups (ties between pairs: the first pair)."""
    groups = [[i] for i in range(k)]
    while len(groups) > 1:
        best = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                merged = sorted(groups[a] + groups[b])
                gain = _group_score(merged, Z) - _group_score(groups[a], Z) - _group_score(groups[b], Z)
                if best is None or gain > best[0] + 1e-12:
                    best = (gain, a, b)
        gain, a, b = best
        if gain < -1e-12 and len(groups) <= max_groups:
            break
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return groups
