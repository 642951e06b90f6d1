"""The op vocabulary as plain data: which ops a grammar may name and what parameters
they take. No torch here; `nasmt.ops` holds the modules, `nasmt.build` maps names to them.

Every op either works on images (N,C,H,W), turns an image into a vector (`gap`,
`flatten`), works on vectors (N,D), or works on both. The builder tracks channels and
spatial size so that every derivation builds: a vector op on an image flattens first, a
branch that ends on an image gets a global average pool before its output layer, a pool
on a 1x1 map is the identity. Tabular input ops (kind "stem": the embeddings periodic,
plenc, catembed, and ensemble) read the raw column layout (ArchSpec.columns) and stand in
the trunk's first stage, before every other op.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BALANCE_METHODS = ("equal", "uncertainty", "dwa", "gradnorm", "pcgrad", "mgda")  # nasmt.train.balance implements them
SOFT_OPS = ("mmoe", "ple")  # expert mixtures: they end the trunk and give every reader its own gated output
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
    label: bool = False  # any name or non-negative integer, kept as a string label (join's group)

    def check(self, v) -> str | None:
        """None if `v` is allowed, else why not."""
        if self.label:
            return None if isinstance(v, str) or isinstance(v, int) and v >= 0 else "must be a name or a non-negative integer"
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
    kind: str  # image | flatten | vector | stem | any | soft | tap | join | precision | train
    params: dict = field(default_factory=dict)
    doc: str = ""


_K = ParamSchema(int, 1, 11, odd=True)
_C = ParamSchema(int, 1, 4096)
_S = ParamSchema(int, 1, 2, default=1)
_N = ParamSchema(int, 0, 16)  # expert counts (0 is refused with its own message: a gate needs experts)
_H = ParamSchema(int, 1, 4096)  # an expert's units (vector input) or channels (image input)
_KE = ParamSchema(int, 1, 11, default=3, odd=True)  # a conv expert's kernel
_D = ParamSchema(int, 1, 1024)  # an embedding's width per column
REG_LOSSES = ("mse", "l1", "huber", "match")  # nasmt.train.losses implements them (match: l1 for MAE tasks)
SCHEDULES = ("onecycle", "cosine", "constant")  # nasmt.train.loop implements them

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
    "resblock": OpSchema(
        "vector",
        {"h": ParamSchema(int, 1, 65536), "p": ParamSchema(float, 0.0, 0.9, default=0.0)},
        "residual MLP block (Gorishniy et al. 2021): x + dropout(linear(dropout(relu(linear(layernorm(x), h))))); "
        "keeps the width",
    ),
    "periodic": OpSchema(
        "stem",
        {"n": ParamSchema(int, 1, 256), "d": _D, "sigma": ParamSchema(float, 1e-4, 100.0, default=1.0)},
        "PLR embedding of each numeric column (Gorishniy et al. 2022): sin/cos of n learned frequencies "
        "(initialized N(0, sigma^2)), the column's own linear layer to d units, ReLU; tabular input, first stage",
    ),
    "plenc": OpSchema(
        "stem",
        {"bins": ParamSchema(int, 2, 256), "d": _D},
        "piecewise-linear encoding of each numeric column over `bins` quantile bins of the training split "
        "(Gorishniy et al. 2022), the column's own linear layer to d units, ReLU; tabular input, first stage",
    ),
    "catembed": OpSchema(
        "stem",
        {"d": _D},
        "a learned d-dim embedding per categorical column instead of its one-hot block; tabular input, first stage",
    ),
    "ensemble": OpSchema(
        "stem",
        {"k": ParamSchema(int, 0, 64), "h": ParamSchema(int, 1, 65536)},
        "TabM-style ensemble (Gorishniy et al. 2024) of k members sharing every weight: a BatchEnsemble linear "
        "layer to h units (per-member rank-1 scaling r_i, s_i and bias) + ReLU; each task outputs the mean of "
        "its members'; tabular input, first stage, after the embeddings",
    ),
    "dropout": OpSchema("any", {"p": ParamSchema(float, 0.0, 0.9)}, "dropout with probability p"),
    "identity": OpSchema("any", {}, "no-op (an explicit 'skip' alternative)"),
    "mmoe": OpSchema(
        "soft",
        {"n": _N, "h": _H, "k": _KE},
        "MMoE (Ma et al. 2018): n shared experts (fc(h) on vectors, conv(k, c=h) on images) mixed for each "
        "reader (task or group) by its own softmax gate on the layer's input; ends the trunk",
    ),
    "ple": OpSchema(
        "soft",
        {"shared": _N, "own": _N, "levels": ParamSchema(int, 1, 4, default=1), "h": _H, "k": _KE},
        "PLE (Tang et al. 2020): `levels` stacked CGC levels, each with `shared` shared experts and `own` experts "
        "per reader, per-reader gates and (between levels) a shared gate; ends the trunk",
    ),
    "join": OpSchema(
        "join",
        {"group": ParamSchema(str, label=True)},
        "in a branch, instead of tap: read the output of a task group (the 'group' rule: its own tap and layers)",
    ),
    "balance": OpSchema(
        "train",
        {"method": ParamSchema(str, choices=BALANCE_METHODS, default="equal")},
        "how the task losses are balanced in training (the 'train' rule)",
    ),
    "optim": OpSchema(
        "train",
        {"lr": ParamSchema(float, 1e-6, 1.0, default=None), "wd": ParamSchema(float, 0.0, 1.0, default=1e-4)},
        "AdamW learning rate and weight decay of the trial (the 'train' rule)",
    ),
    "schedule": OpSchema(
        "train",
        {"kind": ParamSchema(str, choices=SCHEDULES), "warmup": ParamSchema(float, 0.0, 0.9, default=0.05)},
        "learning-rate schedule: onecycle, cosine decay after a linear warm-up over the `warmup` share of the "
        "steps, or constant (the 'train' rule)",
    ),
    "early": OpSchema(
        "train",
        {"patience": ParamSchema(int, 0, 10000)},
        "early stopping: stop after `patience` epochs without a better validation loss and keep the best "
        "epoch's weights; 0 trains the whole budget (the 'train' rule)",
    ),
    "batch": OpSchema("train", {"size": ParamSchema(int, 1, 1 << 20)}, "minibatch size (the 'train' rule)"),
    "regloss": OpSchema(
        "train",
        {"fn": ParamSchema(str, choices=REG_LOSSES)},
        "the regression tasks' loss: mse, l1 (matches an MAE metric), huber (delta 1 on standardized "
        "targets) or match (per task: l1 where the metric is MAE, else mse) (the 'train' rule)",
    ),
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
VECTOR_OPS = frozenset(n for n, s in OPS.items() if s.kind in ("vector", "flatten", "stem"))
STEM_OPS = frozenset(n for n, s in OPS.items() if s.kind == "stem")  # tabular input ops: the first trunk stage
EMBED_OPS = frozenset(("periodic", "plenc", "catembed"))  # stem ops that read the raw column layout
TRAIN_OPS = tuple(n for n, s in OPS.items() if s.kind == "train")
