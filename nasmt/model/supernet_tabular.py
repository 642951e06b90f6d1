"""How the one-shot bank shares the weights of the tabular ops (issue 17's vocabulary).

Rules (`tabular_pieces`, `tabular_kind`; everything else follows the generic rule of
`nasmt.model.supernet`: the first rows / columns of the largest tensor):

- `periodic(n, d, sigma)`: one set of weights per `sigma` (the frequencies' scale is what
  sigma chooses, so two sigmas do not share). The frequencies `freq` (F, n): the first n
  per column. The per-column linear layer (a grouped 1x1 convolution, weight
  (F*d, 2n, 1, 1): column j's d outputs read its n sines then its n cosines) lives in the
  bank in its natural shape (F, d_max, 2, n_max): a candidate takes `[:F, :d, :, :n]`
  and reshapes it, so unit u of column j and frequency i keep their weights whatever d
  and n the candidate has (a plain first-rows slice of the grouped weight would hand
  column 0's units to column 1 when d changes, and cosines to sines when n changes).
- `plenc(bins, d)`: one set of weights per bin count (bin t of 8 bins and of 32 bins
  are different intervals); the per-column linear layer in its natural shape
  (F, d_max, bins), the first d units per column. The fitted bins are buffers of the
  candidate's structure, fitted on the training split when the structure is built
  (`SuperNet.candidate`), exactly as training a network from scratch fits them.
- `catembed(d)`: generic (per column table (d, width): the first d units).
- `ensemble(k, h)`: generic (shared linear: first h units; members' r, s, bias: the
  first k members); r and s start as random signs, as TabM.
- `resblock(h, p)`: generic; LayerNorm's scale and shift start at 1 and 0 (as BatchNorm's).

- The layer after the stem (an `fc` or `ensemble`, the stem's last op) reads the stem's
  output through a column map (`StemLayout`): the bank's input columns are canonical, one
  per feature the stem can produce: the raw input columns (numeric ones as they are,
  one-hot blocks), then one region per embedding variant (each periodic sigma, each plenc
  bin count, catembed) of (column x d_max) slots. A candidate's input position maps to the
  slot of the feature it holds, so `catembed(d=4)` and `catembed(d=16)` read the same
  weights for column 0's first 4 units, and the numeric block moving behind the categorical
  one moves nothing. Without the map (a first-columns slice, as after a width choice) every
  candidate whose stem widths differ from the sandwich extremes' scored at chance level:
  measured on people.toml, `catembed.d` 4 -> 16 alone took the smallest candidate's
  validation mean_error from 0.275 to 0.52.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nasmt.model import ops as O
from nasmt.space.nodes import Op

FIT_OPS = frozenset({"plenc"})  # ops whose structure carries state fitted on the training inputs
EMBEDDINGS = (O.Periodic, O.PiecewiseLinear, O.CatEmbed)  # stem ops that read the raw columns by position
READERS = (O.FC, O.Ensemble)  # the stem's last op: its input columns go through the StemLayout map


def _tag(v) -> str:
    """A choice as a module-name-safe tag (no dots)."""
    return str(v).replace(".", "_").replace("-", "m")


def tabular_pieces(rest: str, shape: tuple, module: nn.Module, reads: StemLayout | None = None):
    """[(bank sub-key, bank shape, candidate shape or None, column map or None)] for the
    parameter `rest` of a tabular op's module, or None where the generic rule applies. A
    candidate shape means: the first entries of every dimension of the bank shape, then
    reshaped; a column map: the first rows, then these columns (dim 1). `reads`: the
    stem's layout when `module` is the layer reading the stem's output."""
    shape = tuple(shape)
    if reads is not None and rest in ("linear.weight", "r"):
        return [(rest, (shape[0], reads.width), None, tuple(reads.lab))]
    if isinstance(module, O.Periodic):
        _, num, n, d, sigma = module.args
        f, tag = len(num), f"sigma{_tag(sigma)}"
        if rest == "freq":
            return [(f"{tag}.freq", shape, None, None)]
        if rest == "linear.weight":
            return [(f"{tag}.{rest}", (f, d, 2, n), shape, None)]
        if rest == "linear.bias":
            return [(f"{tag}.{rest}", (f, d), shape, None)]
    if isinstance(module, O.PiecewiseLinear):
        _, num, bins, d = module.args
        f, tag = len(num), f"bins{bins}"
        if rest == "linear.weight":
            return [(f"{tag}.{rest}", (f, d, bins), shape, None)]
        if rest == "linear.bias":
            return [(f"{tag}.{rest}", (f, d), shape, None)]
    return None


def tabular_kind(module: nn.Module, rest: str, owner: nn.Module) -> str | None:
    """How a tabular op's bank tensor is initialized (see `init_tensor`), or None."""
    if isinstance(owner, nn.LayerNorm):
        return "norm"
    if isinstance(module, O.Ensemble) and rest in ("r", "s"):
        return "sign"
    if isinstance(module, O.Periodic):
        return f"freq:{float(module.args[4])!r}" if rest == "freq" else "grouped"
    if isinstance(module, O.PiecewiseLinear):
        return "grouped"
    return None


@torch.no_grad()
def init_tensor(t: torch.Tensor, key: str, kind: str, shapes: dict, gen: torch.Generator) -> None:
    """Initialize bank tensor `t` (key `key`) as its module initializes it, at the largest
    shape: BatchNorm / LayerNorm scale 1 and shift 0, random signs, N(0, sigma^2)
    frequencies, and uniform(+-1/sqrt(fan_in)) for weights (kaiming_uniform with a=sqrt(5),
    as nn.Linear / nn.Conv2d) and biases; a grouped weight's fan-in is its group's input
    (the dimensions after (columns, units))."""
    if kind in ("bn", "norm"):
        t.fill_(1.0 if key.endswith("weight") else 0.0)
    elif kind == "sign":
        t.copy_(torch.randint(0, 2, t.shape, generator=gen).to(t.dtype) * 2 - 1)
    elif kind.startswith("freq:"):
        t.copy_(torch.randn(t.shape, generator=gen) * float(kind[5:]))
    elif kind == "grouped":
        w = shapes.get(key[: -len("bias")] + "weight") if key.endswith("bias") else t.shape
        fan_in = math.prod(w[2:]) if w is not None else 0
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(t, -bound, bound, generator=gen)
    elif t.dim() > 1:
        nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=gen)
    else:
        w = shapes.get(key[: -len("bias")] + "weight") if key.endswith("bias") else None
        fan_in = math.prod(w[1:]) if w is not None else 0
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(t, -bound, bound, generator=gen)


def needs_fit(grammar) -> bool:
    """Whether some derivation of `grammar` builds an op fitted on the training inputs."""
    return any(isinstance(it.atom, Op) and it.atom.name in FIT_OPS
               for r in grammar.rules.values() for a in r.alts for it in a.items)


def _variant(module: nn.Module) -> str:
    """The embedding region a stem module writes: its op and the choice that keys its weights."""
    if isinstance(module, O.Periodic):
        return f"periodic.sigma{_tag(float(module.args[4]))}"
    if isinstance(module, O.PiecewiseLinear):
        return f"plenc.bins{module.args[2]}"
    return "catembed"


def stem_regions(grammar) -> tuple[list[str], int]:
    """Every embedding region a derivation of `grammar` can produce (sorted) and the widest
    embedding `d` it offers; ([], 0) for a grammar without tabular embeddings."""
    regions, dmax = set(), 0
    for r in grammar.rules.values():
        for a in r.alts:
            for it in a.items:
                op = it.atom
                if not isinstance(op, Op) or op.name not in ("periodic", "plenc", "catembed"):
                    continue
                dmax = max([dmax, *(int(c) for c in op.param("d").choices)])
                if op.name == "periodic":
                    p = op.param("sigma")
                    regions.update(f"periodic.sigma{_tag(float(c))}" for c in (p.choices if p else (1.0,)))
                elif op.name == "plenc":
                    regions.update(f"plenc.bins{int(c)}" for c in op.param("bins").choices)
                else:
                    regions.add("catembed")
    return sorted(regions), dmax


class StemLayout:
    """The canonical input column of every feature after a candidate's tabular stem (see
    the module docstring). `lab[i]`: the canonical column of the stem output's position i;
    `width`: how many canonical columns there are (the bank's input width for the layer
    reading the stem). Follow the stem's units with `after`; `reads(group, module)` is the
    layout when `module` is the layer that reads the stem's output, else None."""

    def __init__(self, regions: list[str], dmax: int, columns: tuple[int, ...]):
        from nasmt.model.build import _segments

        segs = _segments(tuple(columns))
        raw = sum(w for _, w, _ in segs)
        self.stride = max(sum(c == 0 for *_, c in segs), sum(c > 0 for *_, c in segs)) * dmax
        self.dmax, self.base = dmax, {r: raw + i * self.stride for i, r in enumerate(regions)}
        self.width = raw + len(regions) * self.stride
        self.lab = list(range(raw))
        self.done = False

    @classmethod
    def of(cls, grammar, spec) -> StemLayout | None:
        regions, dmax = stem_regions(grammar)
        return cls(regions, dmax, spec.columns) if regions and spec.columns else None

    def reads(self, group: str, module: nn.Module) -> StemLayout | None:
        return self if not self.done and group == "trunk.0" and isinstance(module, READERS) else None

    def after(self, group: str, module: nn.Module) -> None:
        """Move past `module` (in unit order)."""
        if self.done or group != "trunk.0" or not any(True for _ in module.parameters()):
            return  # a dropout keeps the layout; later groups never see it
        if not isinstance(module, EMBEDDINGS):
            self.done = True  # the reading layer (or another op: it keeps the generic rule)
            return
        base = self.base[_variant(module)]
        if isinstance(module, O.CatEmbed):
            din, blocks, d = module.args
            used = {i for s, w in blocks for i in range(s, s + w)}
            n = len(blocks)
        else:
            din, num, d = module.args[0], module.args[1], module.args[3]
            used, n = set(num), len(num)
        emb = [base + j * self.dmax + t for j in range(n) for t in range(d)]
        self.lab = emb + [self.lab[i] for i in range(din) if i not in used]
