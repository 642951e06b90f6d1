"""The one-shot supernet: a weight bank every architecture of a grammar takes its weights from.

Keys. A bank tensor is keyed by the derivation position of the op that uses it, plus the
tensor's name inside the op's module: `trunk.stage.1.block.0.conv.conv.weight`,
`trunk.mix.mmoe.experts.2.conv.weight`, `branch.left.tap.head.fc.linear.weight`. The
position is the op's derivation path (the same paths decision names use), so it already
holds the alternative's label (conv vs dwsep at one place: their own weights), the
instance index of a repetition (`block{1,2}`: a one-block stage uses block 0's weights, a
two-block one blocks 0 and 1: elastic depth as in OFA) and is independent of how many
items came before (`down` after one or two blocks, and the mixture ending a trunk of 1-3
stages, keep one set of weights). A task's output layer, which the builder adds, is
`branch.<task>.out.linear.*`: one head per task, whichever branch alternative it takes.
A split bank (`split=True`) also keys the ops of task groups and branches by the features
they read (`plan_sources`): one set of weights per tapped stage / pooling / preceding layer.

Shapes. Each bank tensor is the elementwise maximum of the shapes it takes in a few hundred
random derivations of the grammar (plus any given specs). A candidate takes, per tensor,
`bank[:out, :in]` (OFA's elastic width: the first channels / units / experts) and for
kernels OFA's centre crop of the largest kernel. Expert mixtures: experts by index (the
first n), gates sliced to the chosen expert count; gates and PLE's per-reader experts are
keyed by the reader (task ident or `group.<g>`), not by its slot; a PLE gate's rows are
assembled from a shared-expert block and an own-expert block, so changing one count does
not shift the other's rows. BatchNorm's affine parameters are sliced like weights; running
statistics are not shared: each candidate structure keeps its own (recalibrate them with
`SuperNet.recalibrate` / `recalibrate_bn` before judging it). The tabular ops' rules (per
sigma / bin count, per-column slices of grouped weights kept in their natural shape: a piece
`(key, bank shape, candidate shape)`, fitted bins per structure) are in `supernet_tabular`.

A candidate's structure is `build(spec)`, an ordinary MultiTaskNet: `SuperNet.forward`
runs it with bank slices through `torch.func.functional_call` (gradients reach the bank);
`SuperNet.extract` returns a standalone MultiTaskNet with the slices (and the structure's
BatchNorm statistics) copied in, which quantization, export etc. handle unchanged.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from nasmt.model.build import build, fit_inputs, readers, units
from nasmt.model.supernet_specs import RandomTrial, extreme_spec, random_specs, trace  # noqa: F401 (re-exported)
from nasmt.model.supernet_tabular import StemLayout, init_tensor, needs_fit, tabular_kind, tabular_pieces
from nasmt.space import derive as D
from nasmt.space.nodes import Grammar
from nasmt.space.spec import ArchSpec

SIZING_SAMPLES = 300  # random derivations the bank's shapes are the maximum over
CACHE_SIZE = 32  # candidate structures kept (largest / smallest stay hot in sandwich training)


# -- the bank -----------------------------------------------------------------------------

def _reader_names(spec: ArchSpec) -> dict[str, list[str]]:
    """trunk group -> its readers in slot order (for the stages ending in a mixture)."""
    return {f"trunk.{i - 1}": rs for i, rs in readers(spec).items()}


def _pieces(rest: str, shape: tuple, op_module: nn.Module | None, slot_readers: list[str]):
    """[(bank sub-key, piece shape)] whose slices, concatenated on dim 0, make the tensor
    `rest` (its name inside the op's module) of shape `shape`."""
    parts = rest.split(".")
    from nasmt.model.ops import PLE

    def reader(i):
        return slot_readers[int(i)]

    if parts[0] == "gates":  # MMoE: one gate per reader, rows = experts by index
        return [(".".join(["gates", reader(parts[1]), *parts[2:]]), shape)]
    if parts[0] == "levels" and isinstance(op_module, PLE):
        lv, what = parts[1], parts[2]
        ns, no = op_module.n_shared, op_module.n_own
        if what == "own":  # levels.l.own.<slot>.<j>...
            return [(".".join(["levels", lv, "own", reader(parts[3]), *parts[4:]]), shape)]
        if what == "gates":  # rows: shared experts, then the reader's own
            base = ["levels", lv, "gates", reader(parts[3])]
            tail = parts[4:]
            return [(".".join([*base, "shared", *tail]), (ns, *shape[1:])),
                    (".".join([*base, "own", *tail]), (no, *shape[1:]))]
        if what == "shared_gate":  # rows: shared experts, then each reader's own in slot order
            tail = parts[3:]
            out = [(".".join(["levels", lv, "shared_gate", "shared", *tail]), (ns, *shape[1:]))]
            out += [(".".join(["levels", lv, "shared_gate", "own", r, *tail]), (no, *shape[1:])) for r in slot_readers]
            return out
    return [(rest, shape)]


@dataclass
class _Plan:
    """How one candidate takes its tensors: name -> [(bank key, piece shape)]."""

    sources: dict
    kinds: dict  # bank key -> 'bn' | 'weight' (conv / linear)


TRANSPARENT = ("dropout", "identity")  # ops that leave the features as they are (no source of their own)


def _group_input(group: str, spec: ArchSpec, feats: dict) -> str:
    """The feature id a unit group reads: the network's input, a trunk stage's (`stage<i>`,
    whatever its ops), or the joined task group's."""
    kind, _, name = group.partition(".")
    if kind == "trunk":
        return f"stage{name}" if name != "0" else "input"
    if kind == "groups":
        return f"stage{next(g.tap for g in spec.groups if g.name == name)}"
    b = next(b for b in spec.branches if b.task == name)
    return feats[f"groups.{b.group}"] if b.group is not None else f"stage{b.tap}"


def plan_sources(grammar: Grammar, spec: ArchSpec, split: bool = False) -> _Plan:
    """Where each parameter of `build(spec)` comes from in the bank. Read off `units(spec)`
    (built on the meta device: nothing allocated), whose modules `build` assembles in order
    into each group's Sequential, so parameter names match `build(spec)`'s.

    `split` (a bank built with split=True): the ops of task groups and branches are also
    keyed by the features they read (`<path>@<source>`), so an op reading different things
    in different candidates (a branch tapping stage 1 or 3, an output layer after an own
    layer or straight after the tap, an fc after gap or after flatten) has one set of
    weights per source instead of columns that mean different things (a few-shot NAS-like
    split of the supernet, Zhao et al. 2021). A source is a trunk stage (`stage<i>`,
    whatever its ops) or, inside a group or branch, the path of the last op with weights,
    through transparent ops (dropout, identity) and through weightless ones that change
    the features (pooling, flatten), which name it. Trunk ops (mixtures included) keep one
    set of weights per position (elastic depth, as OFA)."""
    tr = trace(grammar, spec)
    with torch.device("meta"):
        us = units(spec)
    slot_readers = _reader_names(spec)
    sources, kinds = {}, {}
    count: dict = {}
    op_index: dict = {}
    feats: dict = {}  # unit group -> feature id of its output so far
    layout = StemLayout.of(grammar, spec)  # tabular stems: the canonical columns the stem's reader sees
    for u in us:
        j = op_index.get(u.group, 0)
        op_index[u.group] = j + 1
        path = tr.positions.get((u.group, "out") if u.op == "linear" else (u.group, j))
        feat_in = feats[u.group] if j else _group_input(u.group, spec, feats)
        weighted = any(True for m in u.modules for _ in m.parameters())
        feats[u.group] = path if weighted else feat_in if u.op in TRANSPARENT else f"{path}<{feat_in}"
        keyed = split and not u.group.startswith("trunk.")
        at = f"{path}@{str(feat_in).replace('.', ':')}" if keyed else path
        for m in u.modules:
            reads = layout.reads(u.group, m) if layout else None
            c = count.get(u.group, 0)
            count[u.group] = c + 1
            owners = dict(m.named_modules())
            for rest, p in m.named_parameters():
                if path is None:
                    raise ValueError(f"supernet: no derivation position for {u.group}.{c}.{rest}")
                mod = owners[rest.rpartition(".")[0]]
                kind = tabular_kind(m, rest, mod) or ("bn" if isinstance(mod, nn.modules.batchnorm._BatchNorm) else "weight")
                raw = tabular_pieces(rest, tuple(p.shape), m, reads)
                if raw is None:
                    raw = [(sub, sh, None, None) for sub, sh in _pieces(rest, tuple(p.shape), m, slot_readers.get(u.group, []))]
                pieces = []
                for sub, shape, final, cols in raw:
                    k = f"{at}.{sub}"
                    extra = (tuple(final),) if final is not None else (None, tuple(cols)) if cols is not None else ()
                    pieces.append((k, tuple(shape), *extra))
                    kinds[k] = kind
                sources[f"{u.group}.{c}.{rest}"] = pieces
            if layout:
                layout.after(u.group, m)
    return _Plan(sources, kinds)


def _unsplit(key: str) -> str:
    """A split bank key without its source: `<path>@<source>.<name>` -> `<path>.<name>`."""
    head, at, rest = key.partition("@")
    return f"{head}.{rest.partition('.')[2]}" if at else key


def _slice(t: torch.Tensor, shape: tuple, final: tuple | None = None, cols: tuple | None = None) -> torch.Tensor:
    """bank[:s0, :s1, centre k x k]: first rows / columns, centre crop of kernels. A
    reshaped piece (`final` given: a grouped weight kept in its natural shape, see
    supernet_tabular): the first entries of every dimension, reshaped to `final`. A mapped
    piece (`cols`: the stem reader's canonical columns): the first rows, those columns."""
    if cols is not None:
        return t[: shape[0]].index_select(1, torch.as_tensor(cols, device=t.device))
    if final is not None:
        return t[tuple(slice(0, s) for s in shape)].reshape(final)
    idx = [slice(0, shape[0])]
    if len(shape) > 1:
        idx.append(slice(0, shape[1]))
    for d in range(2, len(shape)):
        off = (t.shape[d] - shape[d]) // 2
        idx.append(slice(off, off + shape[d]))
    return t[tuple(idx)]


def _numel(piece: tuple) -> int:
    """Elements of the candidate tensor a plan piece gives."""
    shape = piece[1]
    return shape[0] * len(piece[3]) if len(piece) > 3 else math.prod(shape)


def _node(root: nn.Module, parts: list[str]) -> nn.Module:
    m = root
    for s in parts:
        if s not in m._modules:
            m.add_module(s, nn.Module())
        m = m._modules[s]
    return m


class SuperNet(nn.Module):
    """The weight bank of `grammar` for one task suite (see the module docstring).

    `forward(spec, x)` runs the candidate `spec` on bank slices (gradients reach the bank);
    `forward(x)` runs `self.active`. `extract(spec)` returns a standalone MultiTaskNet.
    """

    def __init__(self, grammar: Grammar, tasks, input_shape, n_outputs, n_samples: int = SIZING_SAMPLES,
                 seed: int = 0, specs=(), split: bool = False, columns: tuple[int, ...] = ()):
        super().__init__()
        self.grammar, self.tasks, self.split = grammar, list(tasks), bool(split)
        self.input_shape, self.n_outputs = tuple(input_shape), dict(n_outputs)
        self.columns = tuple(int(c) for c in columns)  # the tabular column layout (embeddings read it)
        self._cache: OrderedDict = OrderedDict()  # (hash, genome) -> (structure, plan); not submodules
        self.active: ArchSpec | None = None
        self.fit_x: torch.Tensor | None = None  # training inputs, for candidates with fitted encodings (plenc)
        extremes = {m: extreme_spec(grammar, self.tasks, self.input_shape, self.n_outputs, m, self.columns) for m in ("max", "min")}
        every = [extremes["max"], extremes["min"], *specs,
                 *random_specs(grammar, self.tasks, self.input_shape, self.n_outputs, n_samples, seed, self.columns)]
        shapes: dict = {}
        kinds: dict = {}
        sizes = []
        for s in every:
            plan = plan_sources(grammar, s, self.split)
            kinds.update(plan.kinds)
            sizes.append(sum(_numel(piece) for pieces in plan.sources.values() for piece in pieces))
            for pieces in plan.sources.values():
                for k, shape, *_ in pieces:
                    old = shapes.get(k)
                    shapes[k] = shape if old is None else tuple(max(a, b) for a, b in zip(old, shape))
        if self.split:  # a split tensor's outputs (dim 0) as many as its position's over every source seen
            widest: dict = {}
            for k, shape in shapes.items():
                widest[_unsplit(k)] = max(widest.get(_unsplit(k), 0), shape[0])
            shapes = {k: (widest[_unsplit(k)], *shape[1:]) for k, shape in shapes.items()}
        # the greedy extremes, unless a sampled derivation is larger / smaller (a flatten
        # early in the network can outweigh the widest choices)
        self.largest = every[max(range(len(every)), key=lambda i: (sizes[i], -i))]
        self.smallest = every[min(range(len(every)), key=lambda i: (sizes[i], i))]
        gen = torch.Generator().manual_seed(seed)
        self.keys = sorted(shapes)
        for k in self.keys:
            t = torch.empty(shapes[k])
            init_tensor(t, k, kinds[k], shapes, gen)  # as the op's module initializes it, at the largest shape
            parts = k.split(".")
            _node(self, parts[:-1]).register_parameter(parts[-1], nn.Parameter(t))

    @classmethod
    def for_suite(cls, grammar: Grammar, suite, data, **kw) -> SuperNet:
        bank = cls(grammar, suite.tasks, data.input_shape, data.n_outputs, columns=tuple(data.columns), **kw)
        if needs_fit(grammar):  # input encodings fitted on the train split, as `train` fits them
            bank.fit_x = torch.from_numpy(data.x["train"])
        return bank

    def derive(self, trial) -> ArchSpec:
        """A derivation of the bank's grammar for its tasks, answered by `trial`."""
        return D.derive(self.grammar, trial, self.tasks, self.input_shape, self.n_outputs, self.columns)

    def candidate(self, spec: ArchSpec) -> tuple[nn.Module, _Plan]:
        """The cached structure of `spec` (its own BatchNorm statistics) and its plan."""
        key = (spec.hash, spec.genome)
        hit = self._cache.get(key)
        if hit is None:
            # build() initializes weights the bank replaces: under a forked RNG, so whether a
            # structure was cached never shifts the random draws that follow (dropout masks)
            with torch.random.fork_rng(devices=[]):
                hit = (build(spec), plan_sources(self.grammar, spec, self.split))
            if any(hasattr(m, "fit") for m in hit[0].modules()):
                if self.fit_x is None:
                    raise ValueError("supernet: this candidate fits its input encodings on the training inputs; "
                                     "build the bank with SuperNet.for_suite (or set .fit_x)")
                fit_inputs(hit[0], self.fit_x)
            if set(hit[1].sources) != {n for n, _ in hit[0].named_parameters()}:  # build and units disagree
                raise RuntimeError("supernet: the plan does not cover build(spec)'s parameters")
            self._cache[key] = hit
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        cand, _ = hit
        dev = self._device()
        if next(cand.buffers(), torch.empty(0, device=dev)).device != dev:
            cand.to(dev)
        return hit

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def fits(self, spec: ArchSpec) -> bool:
        """Whether every tensor of `spec` fits in the bank (sizes come from the sizing
        sample: a rare unseen combination may need more, e.g. a flatten's input)."""
        params = {n: p.shape for n, p in self.named_parameters()}
        for pieces in plan_sources(self.grammar, spec, self.split).sources.values():
            for k, shape, *_ in pieces:
                if k not in params or any(a > b for a, b in zip(shape, params[k])):
                    return False
        return True

    def tensors(self, spec: ArchSpec) -> dict[str, torch.Tensor]:
        """{candidate parameter name: its bank slice} (views: gradients reach the bank)."""
        _, plan = self.candidate(spec)
        params = dict(self.named_parameters())
        out = {}
        for name, pieces in plan.sources.items():
            ts = []
            for k, shape, *final in pieces:
                t = params.get(k)
                if t is None or any(a > b for a, b in zip(shape, t.shape)):
                    raise ValueError(f"supernet: {k} needs {shape}, the bank holds "
                                     f"{None if t is None else tuple(t.shape)}; pass the spec when building the bank")
                ts.append(_slice(t, shape, *final))
            out[name] = ts[0] if len(ts) == 1 else torch.cat(ts, 0)
        return out

    def resolve(self, spec_or_x, x: torch.Tensor | None = None) -> tuple[ArchSpec, torch.Tensor]:
        """(spec, x) of `forward(spec, x)` or of `forward(x)` (the active spec)."""
        if x is not None:
            return spec_or_x, x
        if self.active is None:
            raise ValueError(f"{type(self).__name__}.forward(x): no active spec (set .active or call forward(spec, x))")
        return self.active, spec_or_x

    def forward(self, spec_or_x, x: torch.Tensor | None = None) -> dict:
        spec, x = self.resolve(spec_or_x, x)
        cand, _ = self.candidate(spec)
        cand.train(self.training)
        return functional_call(cand, self.tensors(spec), (x,), strict=False)

    @torch.no_grad()
    def extract(self, spec: ArchSpec) -> nn.Module:
        """A standalone MultiTaskNet for `spec`: the bank slices copied in, and the
        BatchNorm statistics of the spec's structure here (recalibrate first)."""
        cand, _ = self.candidate(spec)
        net = build(spec).to(self._device())
        params = dict(net.named_parameters())
        for name, t in self.tensors(spec).items():
            params[name].copy_(t)
        own = dict(cand.named_buffers())
        for name, b in net.named_buffers():
            b.copy_(own[name])
        return net.train(self.training)

    def recalibrate(self, spec: ArchSpec, data, n_batches: int = 8, batch_size: int = 128, seed: int = 0) -> None:
        """Recalibrate the BatchNorm statistics of `spec`'s structure on bank weights."""
        cand, _ = self.candidate(spec)
        with torch.no_grad():
            tensors = {k: v.detach() for k, v in self.tensors(spec).items()}
        recalibrate_bn(cand, data, n_batches, batch_size, seed,
                       forward=lambda xb: functional_call(cand, tensors, (xb,), strict=False))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data, n_batches: int = 8, batch_size: int = 128, seed: int = 0,
                   forward=None) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them as the cumulative
    average (momentum=None) over `n_batches` training batches (OFA). Only the BatchNorm
    layers run in train mode (dropout stays off, so the statistics are those the eval-mode
    network sees); `data`: prepared data (its train split) or an input tensor. The model's
    mode and momenta are restored."""
    x = data if isinstance(data, torch.Tensor) else torch.from_numpy(data.x["train"])
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    dev = next(model.buffers()).device
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=gen)
    was = model.training
    momenta = [m.momentum for m in bns]
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for i in range(n_batches):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            if len(idx) == 0:
                break
            xb = x[idx].to(dev)
            (forward or model)(xb)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was)
