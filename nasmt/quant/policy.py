"""Quantization policies: which precision each stage and branch runs, and which layers
that covers.

Every trunk stage and every task branch of an ArchSpec carries `Precision(w, a)`; its
module path in MultiTaskNet is its group (`group_paths`), and every Conv2d / Linear
under a group, paired with the BatchNorm folded into it, is a `QLayer` (`plan`).

Effective precision: int8 activations need int8 weights (ORT has no float-weight x
int8-activation kernel; left alone it re-quantizes such weights per tensor at load), so
a=int8 with fp32/bf16/fp16 weights deploys, simulates and is counted as w8a8.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from nasmt.space.spec import ArchSpec, Precision

INT_BITS = {"int8": 8, "int4": 4}
FLOAT16 = {"bf16": torch.bfloat16, "fp16": torch.float16}


def group_paths(spec: ArchSpec) -> list[tuple[str, Precision]]:
    """(module path in MultiTaskNet, precision) for every stage, task group and branch
    (an expert mixture's experts and gates belong to its stage)."""
    out = [(f"trunk.{i}", st.precision) for i, st in enumerate(spec.stages)]
    out += [(f"groups.{g.name}", g.precision) for g in spec.groups]
    out += [(f"branches.{b.task}", b.precision) for b in spec.branches]
    return out


def is_fp32(spec: ArchSpec) -> bool:
    return all(p.w == "fp32" and p.a == "fp32" for _, p in group_paths(spec))


def policy_summary(spec: ArchSpec) -> str:
    """e.g. 'S1 w8a8 | S2 w4a32 | left w32a32 | right w8a8'."""

    def short(p: Precision) -> str:
        f = lambda s: s.replace("int", "").replace("fp", "").replace("bf16", "b16")
        return f"w{f(p.w)}a{f(p.a)}"

    parts = [f"S{i + 1} {short(st.precision)}" for i, st in enumerate(spec.stages)]
    parts += [f"G{g.name} {short(g.precision)}" for g in spec.groups]
    parts += [f"{b.task} {short(b.precision)}" for b in spec.branches]
    return " | ".join(parts)


def with_policy(spec: ArchSpec, w: str, a: str) -> ArchSpec:
    """The same architecture with one precision everywhere (e.g. the all-int8 baseline)."""
    p = Precision(w, a)
    return replace(
        spec,
        stages=tuple(replace(s, precision=p) for s in spec.stages),
        groups=tuple(replace(g, precision=p) for g in spec.groups),
        branches=tuple(replace(b, precision=p) for b in spec.branches),
    )


def effective(p: Precision) -> Precision:
    """The precision the artifact really runs: int8 activations need int8 weights (ORT
    has no float-weight x int8-activation kernel; left to itself it would quantize such
    weights per tensor at load), so a=int8 with float weights means per-channel int8."""
    if p.a == "int8" and p.w in ("fp32", "bf16", "fp16"):
        return Precision("int8", "int8")
    return p


@dataclass
class QLayer:
    name: str  # full module name of the Conv2d / Linear in the root module
    mod: nn.Module
    bn: nn.Module | None  # the BatchNorm2d folded into it (registered right after it)
    bn_name: str | None
    prec: Precision  # effective precision


def plan(root: nn.Module, paths: list[tuple[str, Precision]]) -> list[QLayer]:
    """Every Conv2d / Linear under each group path, with the BatchNorm that follows it.

    The op modules register a conv's BatchNorm right after it (ConvBNAct: conv, bn;
    DWSep: dw, pw, bn; Residual: conv1, bn1, conv2, bn2), so registration order pairs them.
    """
    out = []
    for path, prec in paths:
        g = root.get_submodule(path) if path else root
        prefix = f"{path}." if path else ""
        if isinstance(g, (nn.Conv2d, nn.Linear)):
            raise ValueError(f"plan: group {path or '<root>'} must be a container, not a bare {type(g).__name__}")
        for pname, parent in g.named_modules():
            kids = list(parent.named_children())
            here = prefix + (f"{pname}." if pname else "")
            for i, (cname, m) in enumerate(kids):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    bn, bn_name = None, None
                    if isinstance(m, nn.Conv2d) and i + 1 < len(kids) and isinstance(kids[i + 1][1], nn.BatchNorm2d):
                        bn_name, bn = kids[i + 1]
                        bn_name = here + bn_name
                    out.append(QLayer(here + cname, m, bn, bn_name, effective(prec)))
    return out
