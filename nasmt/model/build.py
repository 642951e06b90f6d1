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

from torch import nn

from nasmt.model import ops as O
from nasmt.space.spec import ArchSpec, OpSpec


@dataclass(frozen=True)
class Shape:
    c: int  # channels (image) or features (vector)
    h: int = 0
    w: int = 0

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


def op_modules(spec: OpSpec, s: Shape) -> tuple[list[nn.Module], Shape]:
    """Modules for one op and the shape after it."""
    name = spec.op
    g = spec.get
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

    group: str  # module path of its stage / branch in MultiTaskNet: "trunk.<i>" or "branches.<task>"
    label: str  # the op as written ("conv(c=16, k=3, s=2)"); "gap()" / "linear(out=N)" when implicit
    op: str  # the op name ("conv", ..., "gap", "linear")
    modules: list[nn.Module]  # empty where the op is the identity at this shape
    shape: Shape  # its input shape


def _branch_units(b, s: Shape) -> list[Unit]:
    group = f"branches.{b.task}"
    out = []
    for o in (*b.layers, *b.head):
        mods, s2 = op_modules(o, s)
        out.append(Unit(group, str(o), o.op, mods, s))
        s = s2
    if s.image:
        out.append(Unit(group, "gap()", "gap", [O.GlobalPool()], s))
        s = Shape(s.c)
    out.append(Unit(group, f"linear(out={b.out})", "linear", [nn.Linear(s.c, b.out)], s))
    return out


def units(spec: ArchSpec) -> list[Unit]:
    """Every op of the network for `spec`, stages first, then each branch (the order
    `build` creates modules in, so a seeded build initializes the same weights)."""
    s = shape_of(spec.input_shape)
    out, stage_out = [], []
    for i, st in enumerate(spec.stages):
        for o in st.ops:
            mods, s2 = op_modules(o, s)
            out.append(Unit(f"trunk.{i}", str(o), o.op, mods, s))
            s = s2
        stage_out.append(s)
    for b in spec.branches:
        out += _branch_units(b, stage_out[b.tap - 1])
    return out


def build(spec: ArchSpec) -> O.MultiTaskNet:
    """The multi-task network for `spec` (fp32; quantization is applied by nasmt.quant)."""
    groups: dict[str, list[nn.Module]] = {f"trunk.{i}": [] for i in range(len(spec.stages))}
    groups.update({f"branches.{b.task}": [] for b in spec.branches})
    for u in units(spec):
        groups[u.group].extend(u.modules)
    trunk = [nn.Sequential(*groups[f"trunk.{i}"]) for i in range(len(spec.stages))]
    branches = {b.task: nn.Sequential(*groups[f"branches.{b.task}"]) for b in spec.branches}
    return O.MultiTaskNet(trunk, branches, {b.task: b.tap for b in spec.branches})
