"""The op vocabulary as plain data: which ops a grammar may name and what parameters
they take. No torch here; `nasmt.ops` holds the modules, `nasmt.build` maps names to them.

Every op either works on images (N,C,H,W), turns an image into a vector (`gap`,
`flatten`), works on vectors (N,D), or works on both. The builder tracks channels and
spatial size so that every derivation builds: a vector op on an image flattens first, a
branch that ends on an image gets a global average pool before its output layer, a pool
on a 1x1 map is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRECISIONS_W = ("fp32", "bf16", "fp16", "int8", "int4")
PRECISIONS_A = ("fp32", "bf16", "fp16", "int8")
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "int8": 8, "int4": 4}


@dataclass(frozen=True)
class ParamSchema:
    type: type  # int, float or str
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()  # allowed str values (for str params), or special str values
    default: object = None  # None: required
    odd: bool = False

    def check(self, v) -> str | None:
        """None if `v` is allowed, else why not."""
        if isinstance(v, str):
            if v in self.choices:
                return None
            if self.type is str:
                return f"must be one of {', '.join(self.choices)}"
            return f"must be {'an integer' if self.type is int else 'a number'}" + (
                f" or one of {', '.join(self.choices)}" if self.choices else ""
            )
        if self.type is str:
            return f"must be one of {', '.join(self.choices)}"
        if self.type is int and not isinstance(v, int):
            return "must be an integer"
        if self.lo is not None and v < self.lo or self.hi is not None and v > self.hi:
            return f"must be in [{self.lo}, {self.hi}]"
        if self.odd and v % 2 == 0:
            return "must be odd (same padding)"
        return None


@dataclass(frozen=True)
class OpSchema:
    kind: str  # image | flatten | vector | any | tap | precision
    params: dict = field(default_factory=dict)
    doc: str = ""


_K = ParamSchema(int, 1, 11, odd=True)
_C = ParamSchema(int, 1, 4096)
_S = ParamSchema(int, 1, 2, default=1)

OPS: dict[str, OpSchema] = {
    "conv": OpSchema("image", {"k": _K, "c": _C, "s": _S}, "conv k x k -> BatchNorm -> ReLU"),
    "dwsep": OpSchema("image", {"k": _K, "c": _C, "s": _S}, "depthwise k x k + pointwise 1x1, BN, ReLU"),
    "residual": OpSchema("image", {"k": _K}, "two convs with a skip connection; keeps channels"),
    "maxpool": OpSchema("image", {"k": ParamSchema(int, 2, 4, default=2)}, "max pool, stride k"),
    "avgpool": OpSchema("image", {"k": ParamSchema(int, 2, 4, default=2)}, "average pool, stride k"),
    "gap": OpSchema("flatten", {}, "global average pool to a vector"),
    "flatten": OpSchema("flatten", {}, "flatten an image to a vector"),
    "fc": OpSchema(
        "vector",
        {"h": ParamSchema(int, 1, 65536), "act": ParamSchema(str, choices=("relu", "gelu", "tanh"), default="relu")},
        "linear layer with h units and an activation",
    ),
    "dropout": OpSchema("any", {"p": ParamSchema(float, 0.0, 0.9)}, "dropout with probability p"),
    "identity": OpSchema("any", {}, "no-op (an explicit 'skip' alternative)"),
    "tap": OpSchema(
        "tap",
        {"at": ParamSchema(int, 1, 64, choices=("last",))},
        "branch point: the trunk stage (1-based, clamped to the trunk's depth) a task reads",
    ),
    "precision": OpSchema(
        "precision",
        {
            "w": ParamSchema(str, choices=PRECISIONS_W, default="fp32"),
            "a": ParamSchema(str, choices=PRECISIONS_A, default="fp32"),
        },
        "weight and activation precision of a stage or branch",
    ),
}

IMAGE_OPS = frozenset(n for n, s in OPS.items() if s.kind == "image")
VECTOR_OPS = frozenset(n for n, s in OPS.items() if s.kind in ("vector", "flatten"))
