"""ArchSpec -> nn.Module, tracking channels and spatial size so every spec builds.

Rules that make every derivation build (no retries): a vector op on an image flattens
it first; a branch still holding an image at its end gets a global average pool before
its output layer; a pool or stride-2 op on a map already 1x1 is the identity.

`units(spec)` is the one walk over a spec: every op with its modules and input shape,
in module-creation order. `build` assembles the network from it; `nasmt.quant.latency`
measures the same units one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nasmt.model import ops as O
from nasmt.space.spec import ArchSpec, OpSpec
from nasmt.space.vocab import EMBED_OPS, SOFT_OPS, STEM_OPS


@dataclass(frozen=True)
class Shape:
    c: int  # channels (image) or features (vector)
    h: int = 0
    w: int = 0
    cols: tuple[int, ...] = ()  # the raw tabular columns still in the vector (ArchSpec.columns), then -width of
    # an opaque block: kept only by the stem ops that read it (embeddings); any other op drops it

    @property
    def image(self) -> bool:
        return self.h > 0

    @property
    def dims(self) -> tuple[int, ...]:
        """(C, H, W) of an image, (D,) of a vector: one example's tensor shape."""
        return (self.c, self.h, self.w) if self.image else (self.c,)


def shape_of(input_shape) -> Shape:
    shape = tuple(input_shape)
    if len(shape) == 3:
        return Shape(shape[0], shape[1], shape[2])
    if len(shape) == 1:
        return Shape(shape[0])
    raise ValueError(f"unsupported input shape {shape}")


def _segments(cols: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(start, width, code) of each column segment: code 0 numeric, k > 0 a k-value one-hot
    block, -w an opaque block of width w."""
    out, pos = [], 0
    for c in cols:
        w = 1 if c == 0 else abs(c)
        out.append((pos, w, c))
        pos += w
    return out


def _stem(name: str, g, s: Shape) -> tuple[list[nn.Module], Shape]:
    """The tabular input ops: embeddings read the column layout (`s.cols`); one with no
    column of its kind left is the identity."""
    if name == "ensemble":
        return [O.Ensemble(s.c, g("k"), g("h"))], Shape(g("h"))
    segs = _segments(s.cols)
    if name == "catembed":
        blocks = tuple((a, w) for a, w, c in segs if c > 0)
        if not blocks:
            return [], s
        d = g("d")
        rest = tuple(c for _, _, c in segs if c <= 0)
        return [O.CatEmbed(s.c, blocks, d)], Shape(len(blocks) * d + s.c - sum(w for _, w in blocks), cols=(-len(blocks) * d, *rest))
    num = tuple(a for a, _, c in segs if c == 0)
    if not num:
        return [], s
    d = g("d")
    m = O.Periodic(s.c, num, g("n"), d, float(g("sigma", 1.0))) if name == "periodic" else O.PiecewiseLinear(s.c, num, g("bins"), d)
    rest = tuple(c for _, _, c in segs if c != 0)
    return [m], Shape(len(num) * d + s.c - len(num), cols=(-len(num) * d, *rest))


def op_modules(spec: OpSpec, s: Shape, readers: int = 1) -> tuple[list[nn.Module], Shape]:
    """Modules for one op and the shape after it (for an expert mixture: the shape of each
    of its `readers` outputs)."""
    name = spec.op
    g = spec.get
    if name in STEM_OPS:
        return _stem(name, g, s)
    if name == "resblock":
        mods: list[nn.Module] = []
        if s.image:
            mods.append(nn.Flatten())
            s = Shape(s.c * s.h * s.w)
        return mods + [O.ResBlock(s.c, g("h"), float(g("p", 0.0)))], Shape(s.c)
    if name in ("mmoe", "ple"):
        h, k = g("h"), g("k", 3)
        if name == "mmoe":
            m = O.MMoE(s.c, g("n"), h, readers, s.image, k)
        else:
            m = O.PLE(s.c, g("shared"), g("own"), g("levels", 1), h, readers, s.image, k)
        return [m], Shape(h, s.h, s.w)
    if name in ("conv", "dwsep"):
        st = g("s", 1) if min(s.h, s.w) > 1 else 1
        cls = O.ConvBNAct if name == "conv" else O.DWSep
        m = cls(s.c, g("c"), g("k"), st)
        return [m], Shape(g("c"), -(-s.h // st), -(-s.w // st))
    if name == "residual":
        return [O.Residual(s.c, g("k"))], s
    if name in ("maxpool", "avgpool"):
        k = g("k", 2)
        if min(s.h, s.w) < k:
            return [], s
        cls = nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d
        return [cls(k, k)], Shape(s.c, s.h // k, s.w // k)
    if name == "gap":
        return ([O.GlobalPool()], Shape(s.c)) if s.image else ([], s)
    if name == "flatten":
        return ([nn.Flatten()], Shape(s.c * s.h * s.w)) if s.image else ([], s)
    if name == "fc":
        mods: list[nn.Module] = []
        if s.image:
            mods.append(nn.Flatten())
            s = Shape(s.c * s.h * s.w)
        mods.append(O.FC(s.c, g("h"), g("act", "relu")))
        return mods, Shape(g("h"))
    if name == "dropout":
        p = float(g("p", 0.0))
        return ([nn.Dropout(p)] if p > 0 else []), s
    if name == "identity":
        return [], s
    raise ValueError(f"op {name!r} cannot be built")  # grammar validation prevents this


@dataclass
class Unit:
    """One op of a built network."""

    group: str  # module path of its stage / group / branch in MultiTaskNet: "trunk.<i>", "groups.<g>", "branches.<task>"
    label: str  # the op as written ("conv(c=16, k=3, s=2)"); "gap()" / "linear(out=N)" when implicit; a mixture
    # adds its reader count ("mmoe(h=32, k=3, n=4)x3"): the latency table keys on the label
    op: str  # the op name ("conv", ..., "gap", "linear")
    modules: list[nn.Module]  # empty where the op is the identity at this shape
    shape: Shape  # its input shape


def _seq_units(path: str, ops, s: Shape) -> tuple[list[Unit], Shape]:
    """Units of ops applied in sequence under module path `path`, and the shape after them."""
    out = []
    for o in ops:
        mods, s2 = op_modules(o, s)
        out.append(Unit(path, str(o), o.op, mods, s))
        s = s2
    return out, s


def _branch_units(b, s: Shape, members: int = 1) -> list[Unit]:
    """A branch's ops, then its implicit gap (on an image) and output layer (and the mean
    of an ensemble's `members`)."""
    path = f"branches.{b.task}"
    out, s = _seq_units(path, (*b.layers, *b.head), s)
    if s.image:
        out.append(Unit(path, "gap()", "gap", [O.GlobalPool()], s))
        s = Shape(s.c)
    out.append(Unit(path, f"linear(out={b.out})", "linear", [nn.Linear(s.c, b.out)], s))
    if members > 1:
        out.append(Unit(path, f"mean(k={members})", "mean", [O.MemberMean(members, b.kind or "regression")], Shape(b.out)))
    return out


def members(spec: ArchSpec) -> int:
    """The ensemble size of `spec` (1 without an ensemble op; validation keeps it in the
    first stage, so every task reads after it)."""
    return next((int(o.get("k")) for st in spec.stages for o in st.ops if o.op == "ensemble"), 1)


def readers(spec: ArchSpec) -> dict[int, list[str]]:
    """Who reads each stage (1-based), in slot order: groups, then tasks that tap it directly."""
    out: dict[int, list[str]] = {}
    for g in spec.groups:
        out.setdefault(g.tap, []).append("group." + g.name)
    for b in spec.branches:
        if b.group is None:
            out.setdefault(b.tap, []).append(b.task)
    return out


def units(spec: ArchSpec) -> list[Unit]:
    """Every op of the network for `spec`: stages, then groups, then each branch (the
    order `build` creates modules in, so a seeded build initializes the same weights)."""
    s = shape_of(spec.input_shape)
    if spec.columns and not s.image:
        s = Shape(s.c, cols=tuple(spec.columns))
    who = readers(spec)
    out, stage_out = [], []
    for i, st in enumerate(spec.stages):
        for o in st.ops:
            k = len(who.get(i + 1, ())) or 1
            mods, s2 = op_modules(o, s, k)
            label = f"{o}x{k}" if o.op in SOFT_OPS else str(o)  # a mixture's cost grows with its readers (gates)
            if o.op in EMBED_OPS:  # an embedding's modules depend on the column layout it reads
                label += "@" + ",".join(map(str, s.cols))
            out.append(Unit(f"trunk.{i}", label, o.op, mods, s))
            s = s2
        stage_out.append(s)
    group_out = {}
    for g in spec.groups:
        us, group_out[g.name] = _seq_units(f"groups.{g.name}", g.layers, stage_out[g.tap - 1])
        out += us
    for b in spec.branches:
        out += _branch_units(b, group_out[b.group] if b.group is not None else stage_out[b.tap - 1], members(spec))
    return out


def mixture_slots(spec: ArchSpec) -> dict[str, int]:
    """reader -> its output's index, for the readers of a stage that ends in an expert mixture."""
    who = readers(spec)
    slots = {}
    for i, st in enumerate(spec.stages, 1):
        if st.ops and st.ops[-1].op in SOFT_OPS:
            slots.update({r: j for j, r in enumerate(who.get(i, ()))})
    return slots


def build(spec: ArchSpec) -> O.MultiTaskNet:
    """The multi-task network for `spec` (fp32; quantization is applied by nasmt.quant)."""
    groups: dict[str, list[nn.Module]] = {f"trunk.{i}": [] for i in range(len(spec.stages))}
    groups.update({f"groups.{g.name}": [] for g in spec.groups})
    groups.update({f"branches.{b.task}": [] for b in spec.branches})
    for u in units(spec):
        groups[u.group].extend(u.modules)
    trunk = [nn.Sequential(*groups[f"trunk.{i}"]) for i in range(len(spec.stages))]
    task_groups = {g.name: nn.Sequential(*groups[f"groups.{g.name}"]) for g in spec.groups}
    branches = {b.task: nn.Sequential(*groups[f"branches.{b.task}"]) for b in spec.branches}
    return O.MultiTaskNet(
        trunk, branches, {b.task: b.tap for b in spec.branches}, groups=task_groups,
        group_taps={g.name: g.tap for g in spec.groups}, joins={b.task: b.group for b in spec.branches if b.group},
        slots=mixture_slots(spec),
    )


class _Fitted(Exception):
    pass


def fit_inputs(model: nn.Module, x) -> int:
    """Fit every not yet fitted input encoding of `model` (its `fit`, on the inputs it
    sees for the examples `x`: a forward pass in eval mode, cut short once the last one
    is fitted, so the layers after it never run on the whole split); returns how many."""
    todo = [m for m in model.modules() if hasattr(m, "fit") and not int(m.fitted)]
    if not todo:
        return 0
    left = [len(todo)]

    def fit(mod, args):
        mod.fit(args[0])
        left[0] -= 1
        if left[0] == 0:
            raise _Fitted

    hooks = [m.register_forward_pre_hook(fit) for m in todo]
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except _Fitted:
        pass
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return len(todo)
