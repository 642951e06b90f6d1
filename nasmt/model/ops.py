"""Torch modules for the op vocabulary, and the multi-task network.

Everything in this file depends on torch alone: `nasmt.export` copies the source of
these classes into the generated `model.py`, so an exported model never imports nasmt.
"""

import torch
from torch import nn


class ConvBNAct(nn.Module):
    """conv(k, c, s): k x k convolution (same padding), BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DWSep(nn.Module):
    """dwsep(k, c, s): depthwise k x k + pointwise 1x1 convolution, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, k, stride=s, padding=k // 2, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.pw(self.dw(x))))


class Residual(nn.Module):
    """residual(k): two k x k convolutions with a skip connection; keeps channels."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, k, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, k, padding=k // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(x + self.bn2(self.conv2(y)))


class GlobalPool(nn.Module):
    """gap(): global average pool, (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class FC(nn.Module):
    """fc(h, act): linear layer with h units and an activation."""

    def __init__(self, din: int, h: int, act: str = "relu"):
        super().__init__()
        self.linear = nn.Linear(din, h)
        self.act_name = act
        self.act = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[act]()

    def forward(self, x):
        return self.act(self.linear(x))


def expert(cin: int, h: int, image: bool, k: int = 3, depth: int = 1) -> nn.Module:
    """One expert of a mixture: conv(k, c=h) on images, fc(h) on vectors; with depth > 1,
    `depth` such layers in sequence (the grammar's experts have depth 1)."""
    if depth > 1:
        return nn.Sequential(*(expert(cin if i == 0 else h, h, image, k) for i in range(depth)))
    return ConvBNAct(cin, h, k, 1) if image else FC(cin, h, "relu")


def mix(gate: nn.Module, x, outs: list):
    """The softmax-gated sum of expert outputs `outs`, the gate reading `x` (images
    are averaged over space first)."""
    w = torch.softmax(gate(x.mean(dim=(2, 3)) if x.dim() == 4 else x), dim=-1)
    e = torch.stack(outs, dim=1)  # (N, experts, ...)
    return (w.reshape(w.shape + (1,) * (e.dim() - 2)) * e).sum(dim=1)


class MMoE(nn.Module):
    """mmoe(n, h): n shared experts mixed for each of `readers` readers (tasks or task
    groups) by its own softmax gate on the layer's input (Ma et al. 2018, "Modeling Task
    Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts").
    forward -> a tuple: one (N, h[, H, W]) mixture per reader. `depth`: layers per expert
    (the grammar's mmoe op: 1)."""

    def __init__(self, cin: int, n: int, h: int, readers: int, image: bool, k: int = 3, depth: int = 1):
        super().__init__()
        self.cin, self.n, self.h, self.readers, self.image, self.k = cin, n, h, readers, image, k
        self.depth = depth
        self.experts = nn.ModuleList(expert(cin, h, image, k, depth) for _ in range(n))
        self.gates = nn.ModuleList(nn.Linear(cin, n) for _ in range(readers))

    def forward(self, x):
        outs = [e(x) for e in self.experts]
        return tuple(mix(g, x, outs) for g in self.gates)


class CGC(nn.Module):
    """One level of PLE (a Customized Gate Control block): `shared` shared experts and
    `own` experts per reader; each reader's gate mixes the shared experts and its own;
    unless this is the last level, a shared gate mixes all experts into the next
    level's shared input."""

    def __init__(self, cin: int, shared: int, own: int, h: int, readers: int, image: bool, k: int, last: bool):
        super().__init__()
        self.shared = nn.ModuleList(expert(cin, h, image, k) for _ in range(shared))
        self.own = nn.ModuleList(nn.ModuleList(expert(cin, h, image, k) for _ in range(own)) for _ in range(readers))
        self.gates = nn.ModuleList(nn.Linear(cin, shared + own) for _ in range(readers))
        self.shared_gate = nn.Linear(cin, shared + readers * own) if not last and shared > 0 else None

    def forward(self, xs: list, s):
        shared = [e(s) for e in self.shared]
        own = [[e(x) for e in es] for x, es in zip(xs, self.own)]
        outs = [mix(g, x, shared + o) for g, x, o in zip(self.gates, xs, own)]
        if self.shared_gate is not None:
            s = mix(self.shared_gate, s, shared + [e for o in own for e in o])
        return outs, s


class PLE(nn.Module):
    """ple(shared, own, levels, h): `levels` stacked CGC levels (Tang et al. 2020,
    "Progressive Layered Extraction"); reader r's stream goes through its own experts and
    gate at every level. forward -> a tuple: one output per reader."""

    def __init__(self, cin: int, shared: int, own: int, levels: int, h: int, readers: int, image: bool, k: int = 3):
        super().__init__()
        self.cin, self.n_shared, self.n_own, self.n_levels = cin, shared, own, levels
        self.h, self.readers, self.image, self.k = h, readers, image, k
        self.levels = nn.ModuleList(
            CGC(cin if i == 0 else h, shared, own, h, readers, image, k, i == levels - 1) for i in range(levels)
        )

    def forward(self, x):
        xs, s = [x] * self.readers, x
        for level in self.levels:
            xs, s = level(xs, s)
        return tuple(xs)


class ResBlock(nn.Module):
    """resblock(h, p): the ResNet block of Gorishniy et al. 2021 ("Revisiting Deep Learning
    Models for Tabular Data") with LayerNorm: x + drop(linear2(drop(relu(linear1(norm(x)))))),
    hidden width h; keeps the width."""

    def __init__(self, c: int, h: int, p: float = 0.0):
        super().__init__()
        self.args = (c, h, p)
        self.norm = nn.LayerNorm(c)
        self.linear1 = nn.Linear(c, h)
        self.act = nn.ReLU()
        self.drop1 = nn.Dropout(p)
        self.linear2 = nn.Linear(h, c)
        self.drop2 = nn.Dropout(p)

    def forward(self, x):
        return x + self.drop2(self.linear2(self.drop1(self.act(self.linear1(self.norm(x))))))


def _rest(din: int, used) -> list:
    used = set(used)
    return [i for i in range(din) if i not in used]


class Periodic(nn.Module):
    """periodic(n, d, sigma): PLR embeddings of the numeric input columns `num` (Gorishniy
    et al. 2022, "On Embeddings for Numerical Features in Tabular Deep Learning"): per
    column, sin and cos of 2 pi c x for n learned frequencies c (initialized N(0, sigma^2)),
    the column's own linear layer to d units (a grouped 1x1 convolution), ReLU. The other
    features follow unchanged: (N, D) -> (N, F*d + D - F)."""

    TWO_PI = 6.283185307179586

    def __init__(self, din: int, num: tuple, n: int, d: int, sigma: float = 1.0):
        super().__init__()
        self.args = (din, tuple(num), n, d, sigma)
        f, rest = len(num), _rest(din, num)
        self.register_buffer("num", torch.tensor(list(num), dtype=torch.long))
        self.register_buffer("rest", torch.tensor(rest, dtype=torch.long))
        self.has_rest = bool(rest)
        self.freq = nn.Parameter(torch.randn(f, n) * sigma)
        self.linear = nn.Conv2d(2 * n * f, d * f, 1, groups=f)
        self.act = nn.ReLU()

    def forward(self, x):
        v = self.TWO_PI * self.freq * x[:, self.num].unsqueeze(-1)  # (N, F, n)
        e = torch.cat([torch.sin(v), torch.cos(v)], dim=-1)  # (N, F, 2n)
        y = self.act(self.linear(e.reshape(e.shape[0], -1, 1, 1))).flatten(1)
        return torch.cat([y, x[:, self.rest]], dim=1) if self.has_rest else y


class PiecewiseLinear(nn.Module):
    """plenc(bins, d): piecewise-linear encoding of the numeric input columns `num`
    (Gorishniy et al. 2022): per column, bins between distinct quantiles of its training
    values; bin t encodes clip((x - lo_t) * inv_width_t, 0, 1) (the first bin open below,
    the last open above), then the column's own linear layer to d units and ReLU. The
    fitted bins live in the buffers `lo` and `inv_width` (so the weights file carries
    them); `fit(x)` sets them from the training inputs (a column with fewer distinct
    quantiles than bins gets leading empty bins that encode 0). The other features
    follow unchanged: (N, D) -> (N, F*d + D - F)."""

    def __init__(self, din: int, num: tuple, bins: int, d: int):
        super().__init__()
        self.args = (din, tuple(num), bins, d)
        f, rest = len(num), _rest(din, num)
        self.bins = bins
        self.register_buffer("num", torch.tensor(list(num), dtype=torch.long))
        self.register_buffer("rest", torch.tensor(rest, dtype=torch.long))
        self.has_rest = bool(rest)
        edges = torch.linspace(-2.0, 2.0, bins + 1)  # until fitted: even bins over standardized values
        self.register_buffer("lo", edges[:-1].repeat(f, 1))
        self.register_buffer("inv_width", (1.0 / (edges[1:] - edges[:-1])).repeat(f, 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.long))
        self.linear = nn.Conv2d(bins * f, d * f, 1, groups=f)
        self.act = nn.ReLU()

    @torch.no_grad()
    def fit(self, x):
        """Bins from the quantiles of the training inputs `x` (N, D)."""
        t = self.bins
        q = torch.linspace(0.0, 1.0, t + 1, device=x.device)
        for j, col in enumerate(self.num.tolist()):
            u = torch.unique(torch.quantile(x[:, col].float(), q))
            m = u.numel() - 1
            self.lo[j].zero_()
            self.inv_width[j].zero_()
            if m > 0:
                self.lo[j, t - m:] = u[:-1]
                self.inv_width[j, t - m:] = 1.0 / (u[1:] - u[:-1])
        self.fitted.fill_(1)

    def encode(self, x):
        """(N, D) -> the encoding (N, F, bins) of the numeric columns."""
        z = (x[:, self.num].unsqueeze(-1) - self.lo) * self.inv_width
        parts = [torch.clamp(z[..., :1], max=1.0)]
        if self.bins > 2:
            parts.append(torch.clamp(z[..., 1:-1], 0.0, 1.0))
        parts.append(torch.clamp(z[..., -1:], min=0.0))
        return torch.cat(parts, dim=-1)

    def forward(self, x):
        e = self.encode(x)
        y = self.act(self.linear(e.reshape(e.shape[0], -1, 1, 1))).flatten(1)
        return torch.cat([y, x[:, self.rest]], dim=1) if self.has_rest else y


class CatEmbed(nn.Module):
    """catembed(d): a learned d-dim embedding per categorical input column instead of its
    one-hot block (`blocks`: (start, width) per column): the block times the column's table
    plus its bias (a linear layer) is the table's row for the value, plus the bias; a
    missing or unseen value (all zeros) embeds as the bias alone (a learned "missing"
    vector). The other features follow unchanged. (A linear layer, not nn.Embedding: the
    data path stays one-hot, and quantization and ONNX handle it as every linear layer;
    bias-free linears would export as a MatMul on a transposed copy of the weight.)"""

    def __init__(self, din: int, blocks: tuple, d: int):
        super().__init__()
        self.args = (din, tuple(tuple(b) for b in blocks), d)
        self.blocks = tuple(tuple(b) for b in blocks)
        rest = _rest(din, [i for s, w in self.blocks for i in range(s, s + w)])
        self.register_buffer("rest", torch.tensor(rest, dtype=torch.long))
        self.has_rest = bool(rest)
        self.embed = nn.ModuleList(nn.Linear(w, d) for _, w in self.blocks)
        for m in self.embed:
            nn.init.uniform_(m.weight, -d ** -0.5, d ** -0.5)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        outs = [m(x[:, s : s + w]) for (s, w), m in zip(self.blocks, self.embed)]
        if self.has_rest:
            outs.append(x[:, self.rest])
        return torch.cat(outs, dim=1)


class Ensemble(nn.Module):
    """ensemble(k, h): starts a TabM-style parameter-efficient ensemble (Gorishniy et al.
    2024, "TabM"): k members share every weight; this BatchEnsemble layer gives member i
    relu(((x * r_i) W + c) * s_i + b_i) (W, c shared; r_i, s_i, b_i its own: a rank-1
    scaling of W). The members travel as k consecutive rows per example through every later layer:
    (N, D) -> (N*k, h); `MemberMean` ends them at each task's output."""

    def __init__(self, din: int, k: int, h: int):
        super().__init__()
        self.args = (din, k, h)
        self.din, self.k, self.h = din, k, h
        self.linear = nn.Linear(din, h)
        nn.init.zeros_(self.linear.bias)
        self.r = nn.Parameter(torch.randint(0, 2, (k, din)).float() * 2 - 1)  # random signs (TabM)
        self.s = nn.Parameter(torch.randint(0, 2, (k, h)).float() * 2 - 1)
        self.bias = nn.Parameter((torch.rand(k, h) * 2 - 1) * din ** -0.5)
        self.act = nn.ReLU()

    def forward(self, x):
        xr = (x.unsqueeze(1) * self.r).reshape(-1, self.din)  # (N*k, D), member-minor
        y = self.linear(xr).reshape(-1, self.k, self.h) * self.s + self.bias
        return self.act(y).reshape(-1, self.h)


class MemberMean(nn.Module):
    """The end of an ensemble at a task's output. In evaluation its k members' outputs
    (N*k, C) become one per example (N, C), averaged as TabM averages predictions: a
    multiclass task's output is log(mean of the members' softmax probabilities) (its
    softmax is their mean), a binary task's the logit of the mean of their sigmoid
    probabilities, a regression task's (`kind` "regression", also a spec without kinds)
    the mean of the values. In training every member's output is kept, so each member is
    trained on its own loss (as TabM)."""

    def __init__(self, k: int, kind: str = "regression"):
        super().__init__()
        self.args = (k, kind)
        self.k, self.kind = k, kind

    def forward(self, x):
        if self.training:
            return x
        x = x.reshape(-1, self.k, x.shape[-1])
        if self.kind == "multiclass":
            return torch.logsumexp(torch.log_softmax(x, dim=-1), dim=1) - torch.log(x.new_tensor(float(self.k)))
        if self.kind == "binary":  # logit(mean p) = log(mean p) - log(mean (1 - p)), stably
            ls = nn.functional.logsigmoid
            return torch.logsumexp(ls(x), dim=1) - torch.logsumexp(ls(-x), dim=1)
        return x.mean(dim=1)


TABULAR_OPS = (ResBlock, Periodic, PiecewiseLinear, CatEmbed, Ensemble, MemberMean)  # constructed from .args


class MultiTaskNet(nn.Module):
    """Shared trunk of stages; each task's branch reads the output of one stage, or of a
    task group (a partial branch shared by the tasks that join it).

    `taps[task]`: the 1-based stage a task reads; `groups[g]` a group's modules,
    `group_taps[g]` the stage it reads, `joins[task]` the group a task reads instead.
    A stage ending in an expert mixture outputs one tensor per reader: `slots[reader]`
    (reader: a task ident, or "group.<g>") picks its own. forward -> {task: output}.
    """

    def __init__(self, trunk: list, branches: dict, taps: dict, groups: dict | None = None,
                 group_taps: dict | None = None, joins: dict | None = None, slots: dict | None = None):
        super().__init__()
        self.trunk = nn.ModuleList(trunk)
        self.branches = nn.ModuleDict(branches)
        self.groups = nn.ModuleDict(groups or {})
        self.taps = dict(taps)
        self.group_taps = dict(group_taps or {})
        self.joins = dict(joins or {})
        self.slots = dict(slots or {})

    def read(self, feats: list, stage: int, reader: str):
        f = feats[stage - 1]
        return f[self.slots[reader]] if reader in self.slots else f

    def forward(self, x):
        feats = []
        for stage in self.trunk:
            x = stage(x)
            feats.append(x)
        g = {k: m(self.read(feats, self.group_taps[k], "group." + k)) for k, m in self.groups.items()}
        return {
            task: branch(g[self.joins[task]] if task in self.joins else self.read(feats, self.taps[task], task))
            for task, branch in self.branches.items()
        }


# The classes and functions model.py needs, in definition order.
EXPORTED_CLASSES = (ConvBNAct, DWSep, Residual, GlobalPool, FC, expert, mix, MMoE, CGC, PLE, ResBlock, _rest, Periodic,
                    PiecewiseLinear, CatEmbed, Ensemble, MemberMean, MultiTaskNet)
