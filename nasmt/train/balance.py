"""Multi-task loss balancing: how the per-task losses of a step become parameter gradients.

One small class per method behind one interface (`Balancer`), in the manner of LibMTL
(Lin & Zhang 2023): the training loop (`nasmt.train.loop.train`) hands each step's
per-task losses (already multiplied by the suite's task weights) to `Balancer.backward`,
which leaves `.grad` set on the parameters for the optimizer step. Methods:

- `equal`: the plain sum (the suite's loss as written).
- `uncertainty`: homoscedastic-uncertainty weighting with learned log-variances.
- `dwa`: dynamic weight average over the previous epochs' loss ratios.
- `gradnorm`: learned weights that equalize the task gradients' norms on a shared layer.
- `pcgrad`: projecting conflicting gradients on the shared parameters.
- `mgda`: the min-norm point of the convex hull of the shared-parameter gradients.

The per-task methods (gradnorm, pcgrad, mgda) take one extra backward pass per task;
`train` reports the seconds spent in `backward` so the cost stands beside `equal`'s.
Shared parameters are those not under `branches.` (`shared_parameters`).
`backward` returns the suite's loss of the step, sum_t losses[t] (detached), whatever the
method, so the logged loss compares across methods.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nasmt.space.vocab import BALANCE_METHODS as METHODS  # the one list: the grammar's balance(method=...) names them

Relosses = Callable[[dict], dict]  # relosses({param name: tensor}) -> {task: weighted loss} on the same batch


def shared_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The named trainable parameters shared by tasks: every one not under `branches.`
    (MultiTaskNet keeps each task's own modules under `branches.<task>`)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("branches.")]


def _specific_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("branches.")]


def _suite_loss(losses: dict[str, Tensor]) -> Tensor:
    return sum(losses.values()).detach()


class Balancer:
    """The interface `train` calls; this base holds the model's parameter lists.

    `on_start` runs once, after the optimizer exists and before the LR scheduler is made
    (so a param group added here gets the scheduler's settings). `backward(losses, step,
    relosses)` runs every step after `optimizer.zero_grad`: `losses` the per-task scalar
    losses, already weighted by the suite, in task order; it leaves `.grad` set on the
    parameters (None where no loss reaches one, as `loss.backward()` would) and returns the
    suite's loss of the step (detached). `relosses(overrides)` recomputes the weighted
    per-task losses on the same batch with the named parameters replaced; only the
    lookahead methods use it. `weights()` is the current task weights, for the record.
    """

    name = "base"
    per_task_backward = False  # True where backward takes one backward pass per task

    def on_start(self, model: nn.Module, optimizer: torch.optim.Optimizer, tasks: list[str], steps_per_epoch: int,
                 seed: int) -> None:
        self.model, self.optimizer, self.tasks = model, optimizer, list(tasks)
        self.steps_per_epoch, self.seed = max(1, int(steps_per_epoch)), seed
        self.shared = shared_parameters(model)
        self.specific = _specific_parameters(model)
        self.device = next(model.parameters()).device

    def backward(self, losses: dict[str, Tensor], step: int, relosses: Relosses) -> Tensor:
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        return {t: 1.0 for t in self.tasks}

    # -- helpers of the per-task methods -------------------------------------------------
    def _task_grads(self, losses: dict[str, Tensor]) -> tuple[Tensor, list[bool]]:
        """(K x P) flat gradients of each task's loss w.r.t. the shared parameters (zeros where
        a task does not reach one), and for each shared parameter whether any task reaches it."""
        params = [p for _, p in self.shared]
        reached = [False] * len(params)
        rows = []
        for loss in losses.values():
            gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            flat = []
            for k, (g, p) in enumerate(zip(gs, params)):
                if g is None:
                    flat.append(torch.zeros(p.numel(), device=p.device, dtype=p.dtype))
                else:
                    reached[k] = True
                    flat.append(g.reshape(-1))
            rows.append(torch.cat(flat) if flat else torch.zeros(0, device=self.device))
        return torch.stack(rows), reached

    def _set_shared(self, flat: Tensor, reached: list[bool]) -> None:
        pos = 0
        for (_, p), r in zip(self.shared, reached):
            n = p.numel()
            p.grad = flat[pos : pos + n].view_as(p).to(p.dtype).clone() if r else None
            pos += n

    def _backward_specific(self, total: Tensor) -> None:
        """Gradients of `total` on the task-specific parameters only."""
        ps = [p for p in self.specific]
        if ps and total.requires_grad:
            torch.autograd.backward(total, inputs=ps)


class Equal(Balancer):
    """The plain sum of the (suite-weighted) task losses: one backward pass, the loop's
    behaviour before balancing methods existed."""

    name = "equal"

    def backward(self, losses, step, relosses):
        total = 0.0
        for l in losses.values():
            total = total + l
        total.backward()
        return total.detach()


class Uncertainty(Balancer):
    """Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR 2018. A learned log-variance s_t per task (init 0),
    trained by the main optimizer in its own param group without weight decay; the objective
    is sum_t L_t / (2 exp(s_t)) + s_t / 2 (LibMTL's form for every task kind)."""

    name = "uncertainty"

    def on_start(self, model, optimizer, tasks, steps_per_epoch, seed):
        super().on_start(model, optimizer, tasks, steps_per_epoch, seed)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks), device=self.device))
        optimizer.add_param_group({"params": [self.log_vars], "weight_decay": 0.0})

    def backward(self, losses, step, relosses):
        l = torch.stack([v.float() for v in losses.values()])
        s = self.log_vars
        (l / (2 * s.exp()) + s / 2).sum().backward()
        return _suite_loss(losses)

    def weights(self):
        w = (1.0 / (2 * self.log_vars.detach().exp())).tolist()
        return dict(zip(self.tasks, w))


class DWA(Balancer):
    """Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention" (MTAN), CVPR
    2019, Dynamic Weight Average: w_t = K exp(r_t / T) / sum_k exp(r_k / T), T = 2, with
    r_t = Lbar_t(e-1) / Lbar_t(e-2) the ratio of the task's mean loss over the previous two
    epochs (epoch = steps_per_epoch steps); w = 1 in the first two epochs."""

    name = "dwa"
    T = 2.0

    def on_start(self, model, optimizer, tasks, steps_per_epoch, seed):
        super().on_start(model, optimizer, tasks, steps_per_epoch, seed)
        k = len(self.tasks)
        self.means: list[Tensor] = []  # mean loss of each finished epoch, (K,) each
        self._sum = torch.zeros(k, device=self.device)
        self._count = 0
        self.w = torch.ones(k, device=self.device)

    def _weights_now(self) -> Tensor:
        if len(self.means) < 2:
            return torch.ones(len(self.tasks), device=self.device)
        r = self.means[-1] / self.means[-2]
        return len(self.tasks) * torch.softmax(r / self.T, dim=0)

    def backward(self, losses, step, relosses):
        self.w = self._weights_now()
        l = torch.stack([v.float() for v in losses.values()])
        (self.w * l).sum().backward()
        self._sum += l.detach()
        self._count += 1
        if step % self.steps_per_epoch == 0:  # the epoch ends: its mean enters the ratios
            self.means.append(self._sum / self._count)
            self.means = self.means[-2:]
            self._sum = torch.zeros_like(self._sum)
            self._count = 0
        return _suite_loss(losses)

    def weights(self):
        return dict(zip(self.tasks, self._weights_now().tolist()))


class GradNorm(Balancer):
    """Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive
    Loss Balancing in Deep Multitask Networks", ICML 2018.

    Learnable weights w_t (init 1); W the last shared parameter tensor with dim >= 2 that
    every task's loss reaches. G_t = ||grad_W w_t L_t||, Ltilde_t = L_t / L_t(step 1),
    r_t = Ltilde_t / mean(Ltilde), target_t = mean(G) r_t^alpha (a constant), alpha = 1.5.
    The network's gradients come from sum_t w_t L_t with w held fixed; w's gradient from
    L_grad = sum_t |G_t - target_t| alone, stepped by its own Adam (lr 0.025), after which w
    is renormalized to sum to K. Since grad_W L_t does not depend on w, G_t = w_t ||grad_W L_t||
    and no second-order graph is needed."""

    name = "gradnorm"
    per_task_backward = True
    alpha = 1.5
    lr = 0.025

    def on_start(self, model, optimizer, tasks, steps_per_epoch, seed):
        super().on_start(model, optimizer, tasks, steps_per_epoch, seed)
        self.w = nn.Parameter(torch.ones(len(self.tasks), device=self.device))
        self.w_opt = torch.optim.Adam([self.w], lr=self.lr)
        self.L0: Tensor | None = None
        self.W: nn.Parameter | None = None
        self.last: dict[str, Tensor] = {}  # G and target of the last step, for inspection

    def _pick_layer(self, losses) -> nn.Parameter:
        cands = [p for _, p in self.shared if p.dim() >= 2]
        if not cands:
            raise ValueError("gradnorm: the model has no shared parameter tensor with dim >= 2")
        reach = [True] * len(cands)
        for loss in losses.values():
            gs = torch.autograd.grad(loss, cands, retain_graph=True, allow_unused=True)
            reach = [r and g is not None for r, g in zip(reach, gs)]
        ok = [p for p, r in zip(cands, reach) if r]
        return ok[-1] if ok else cands[-1]

    def backward(self, losses, step, relosses):
        l = torch.stack([v.float() for v in losses.values()])
        if self.W is None:
            self.W = self._pick_layer(losses)
        norms = []
        for loss in losses.values():
            (g,) = torch.autograd.grad(loss, [self.W], retain_graph=True, allow_unused=True)
            norms.append(g.norm() if g is not None else torch.zeros((), device=self.device))
        gnorm = torch.stack(norms).float().detach()
        ld = l.detach()
        if self.L0 is None:
            self.L0 = ld.clamp_min(1e-12)
        G = self.w * gnorm
        lt = ld / self.L0
        r = lt / lt.mean()
        target = (G.mean() * r**self.alpha).detach()
        lgrad = (G - target).abs().sum()
        (self.w.detach() * l).sum().backward()
        self.w_opt.zero_grad(set_to_none=True)
        (self.w.grad,) = torch.autograd.grad(lgrad, [self.w])
        self.w_opt.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-6)
            self.w.mul_(len(self.tasks) / self.w.sum())
        self.last = {"G": G.detach(), "target": target}
        return _suite_loss(losses)

    def weights(self):
        return dict(zip(self.tasks, self.w.detach().tolist()))


def pcgrad_project(grads: Sequence[Tensor], order: Sequence[Sequence[int]] | None = None) -> list[Tensor]:
    """PCGrad's projection (Yu et al. 2020, Algorithm 1): for each task i, for the other tasks
    j in `order[i]` (default: ascending), where g_i . g_j < 0, g_i -= (g_i . g_j) / ||g_j||^2 g_j,
    with g_i the running projected gradient and g_j the original one. Returns the projected
    gradients (the inputs are not modified)."""
    k = len(grads)
    out = []
    for i in range(k):
        gi = grads[i].clone()
        for j in (order[i] if order is not None else [j for j in range(k) if j != i]):
            if j == i:
                continue
            gj = grads[j]
            dot = torch.dot(gi, gj)
            nj = torch.dot(gj, gj)
            coef = torch.where(dot < 0, dot / nj.clamp_min(torch.finfo(nj.dtype).tiny), torch.zeros_like(dot))
            gi = gi - coef * gj
        out.append(gi)
    return out


class PCGrad(Balancer):
    """Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020. Per-task gradients on the shared parameters; each task's gradient loses
    its component along every other task's gradient it conflicts with (negative dot
    product), the others visited in a random order (a generator seeded from the run's
    seed); the shared gradient is the sum of the projected ones. Task-specific parameters
    get the plain gradient of the sum."""

    name = "pcgrad"
    per_task_backward = True

    def on_start(self, model, optimizer, tasks, steps_per_epoch, seed):
        super().on_start(model, optimizer, tasks, steps_per_epoch, seed)
        self.gen = torch.Generator(device="cpu").manual_seed(int(seed))

    def _order(self) -> list[list[int]]:
        k = len(self.tasks)
        return [[j for j in torch.randperm(k, generator=self.gen).tolist() if j != i] for i in range(k)]

    def backward(self, losses, step, relosses):
        total = sum(losses.values())
        if self.shared:
            g, reached = self._task_grads(losses)
            proj = pcgrad_project(list(g), self._order())
            self._set_shared(torch.stack(proj).sum(0), reached)
        self._backward_specific(total)
        return total.detach()


def _min_norm_2(v11: Tensor, v12: Tensor, v22: Tensor) -> tuple[Tensor, Tensor]:
    """Sener & Koltun Algorithm 1: gamma minimizing ||gamma a + (1 - gamma) b||^2 from the
    inner products v11 = a.a, v12 = a.b, v22 = b.b; returns (gamma, the squared norm).
    Equals clip(((b - a) . b) / ||a - b||^2, 0, 1), degenerate cases included."""
    if v12 >= v11:
        return torch.ones_like(v11), v11
    if v12 >= v22:
        return torch.zeros_like(v11), v22
    gamma = (v22 - v12) / (v11 + v22 - 2 * v12)
    return gamma, gamma * gamma * v11 + 2 * gamma * (1 - gamma) * v12 + (1 - gamma) ** 2 * v22


def min_norm_weights(grads: Sequence[Tensor] | Tensor, max_iter: int = 250, tol: float = 1e-6) -> Tensor:
    """The weights alpha (alpha >= 0, sum 1) of the min-norm point of the convex hull of
    `grads` (K vectors, or a K x P tensor) (Sener & Koltun 2018). Two tasks: the closed form.
    More: Frank-Wolfe (the paper's Algorithm 2) on the Gram matrix, started, as in the
    authors' solver, from the best pairwise min-norm point (so the result's norm is at most
    every vertex's and every pair's)."""
    g = torch.stack(list(grads)) if not isinstance(grads, Tensor) else grads
    g = g.reshape(g.shape[0], -1).double()
    k = g.shape[0]
    if k == 1:
        return torch.ones(1, dtype=torch.float64, device=g.device)
    M = g @ g.T
    best = None
    for i, j in itertools.combinations(range(k), 2):
        gamma, cost = _min_norm_2(M[i, i], M[i, j], M[j, j])
        if best is None or cost < best[0]:
            best = (cost, i, j, gamma)
    _, i, j, gamma = best
    alpha = torch.zeros(k, dtype=torch.float64, device=g.device)
    alpha[i], alpha[j] = gamma, 1 - gamma
    if k == 2:
        return alpha
    for _ in range(max_iter):
        grad_dir = M @ alpha  # gradient of alpha^T M alpha / 2
        t = int(torch.argmin(grad_dir))
        v11 = alpha @ grad_dir  # theta . theta
        v12 = grad_dir[t]  # theta . g_t
        v22 = M[t, t]
        gamma, _ = _min_norm_2(v11, v12, v22)  # weight on theta; 1 - gamma on g_t
        step = 1 - gamma
        new = gamma * alpha
        new[t] += step
        if float((new - alpha).abs().sum()) < tol:
            alpha = new
            break
        alpha = new
    return alpha


class MGDA(Balancer):
    """Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018:
    MGDA on the shared parameters. alpha = the min-norm point of the convex hull of the
    per-task shared-parameter gradients (`min_norm_weights`); the step follows
    sum_t K alpha_t L_t (K so the step size compares with equal's). The shared gradient is
    composed from the per-task gradients already computed; the task-specific parameters
    get the gradient of the same weighted sum."""

    name = "mgda"
    per_task_backward = True

    def on_start(self, model, optimizer, tasks, steps_per_epoch, seed):
        super().on_start(model, optimizer, tasks, steps_per_epoch, seed)
        self.alpha = torch.full((len(self.tasks),), 1.0 / max(1, len(self.tasks)), device=self.device)

    def backward(self, losses, step, relosses):
        k = len(self.tasks)
        l = torch.stack([v.float() for v in losses.values()])
        if self.shared:
            g, reached = self._task_grads(losses)
            self.alpha = min_norm_weights(g).to(device=g.device, dtype=torch.float32)
            w = k * self.alpha
            self._set_shared((w.to(g.dtype)[:, None] * g).sum(0), reached)
        else:
            w = torch.ones(k, device=self.device)
        self._backward_specific((w.detach() * l).sum())
        return _suite_loss(losses)

    def weights(self):
        return dict(zip(self.tasks, (len(self.tasks) * self.alpha).tolist()))


_CLASSES = {c.name: c for c in (Equal, Uncertainty, DWA, GradNorm, PCGrad, MGDA)}
assert tuple(_CLASSES) == METHODS


def make_balancer(method: str) -> Balancer:
    """A fresh balancer of the named method (one of METHODS)."""
    if method not in _CLASSES:
        raise ValueError(f"balance: {method!r} is not one of {', '.join(METHODS)}")
    return _CLASSES[method]()
