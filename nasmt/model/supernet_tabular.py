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

The layer after the stem reads the stem's output by position, like every layer after a
width choice (OFA's elastic width): with embeddings of different widths its first
columns belong to different columns of the table. That is the approximation of this
bank; `nasmt oneshot-check` measures how well inherited scores rank anyway.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nasmt.model import ops as O
from nasmt.space.nodes import Op

FIT_OPS = frozenset({"plenc"})  # ops whose structure carries state fitted on the training inputs


def _tag(v) -> str:
    """A choice as a module-name-safe tag (no dots)."""
    return str(v).replace(".", "_").replace("-", "m")


def tabular_pieces(rest: str, shape: tuple, module: nn.Module):
    """[(bank sub-key, bank shape, candidate shape or None)] for the parameter `rest` of a
    tabular op's module, or None where the generic rule applies. A candidate shape means:
    take the first entries of every dimension of the bank shape, then reshape."""
    shape = tuple(shape)
    if isinstance(module, O.Periodic):
        _, num, n, d, sigma = module.args
        f, tag = len(num), f"sigma{_tag(sigma)}"
        if rest == "freq":
            return [(f"{tag}.freq", shape, None)]
        if rest == "linear.weight":
            return [(f"{tag}.{rest}", (f, d, 2, n), shape)]
        if rest == "linear.bias":
            return [(f"{tag}.{rest}", (f, d), shape)]
    if isinstance(module, O.PiecewiseLinear):
        _, num, bins, d = module.args
        f, tag = len(num), f"bins{bins}"
        if rest == "linear.weight":
            return [(f"{tag}.{rest}", (f, d, bins), shape)]
        if rest == "linear.bias":
            return [(f"{tag}.{rest}", (f, d), shape)]
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
