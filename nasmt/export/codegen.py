"""The standalone `model.py` of an export: plain PyTorch that never imports nasmt.

Its classes are the builder's own (their source is copied from `nasmt/model/ops.py` with
`inspect`), so the exported module reproduces the trained model exactly; likewise its
`predict(rows)` runs the training data's own encoder and output decoder (the body of
`nasmt/data/encoding.py`, copied) with the suite's fitted `preprocessing.json`. Task
names from user files never become code: only their sanitized identifiers appear, as
string literals; the original names live in arch.json.
"""

from __future__ import annotations

import ast
import functools
import inspect

from torch import nn

from nasmt.data import encoding
from nasmt.data.encoding import PREPROCESSING_FILE
from nasmt.model import ops as O
from nasmt.run import WEIGHTS_FILE
from nasmt.space.spec import ArchSpec

DOC_TEXT_CHARS = 80  # user text (a run or space name) quoted in a docstring is cut to this


def safe_doc(s) -> str:
    """`s` reduced to characters that cannot end a docstring or a markdown code span."""
    return "".join(ch for ch in str(s) if ch.isalnum() or ch in "-_. ")[:DOC_TEXT_CHARS]


def _ctor(m: nn.Module) -> str:
    """Python source that constructs module `m` (a builder-made op)."""
    if isinstance(m, O.ConvBNAct):
        c = m.conv
        return f"ConvBNAct({c.in_channels}, {c.out_channels}, {c.kernel_size[0]}, {c.stride[0]})"
    if isinstance(m, O.DWSep):
        return f"DWSep({m.dw.in_channels}, {m.pw.out_channels}, {m.dw.kernel_size[0]}, {m.dw.stride[0]})"
    if isinstance(m, O.Residual):
        return f"Residual({m.conv1.in_channels}, {m.conv1.kernel_size[0]})"
    if isinstance(m, O.MMoE):
        return f"MMoE({m.cin}, {m.n}, {m.h}, {m.readers}, {m.image}, {m.k})"
    if isinstance(m, O.PLE):
        return f"PLE({m.cin}, {m.n_shared}, {m.n_own}, {m.n_levels}, {m.h}, {m.readers}, {m.image}, {m.k})"
    if isinstance(m, O.GlobalPool):
        return "GlobalPool()"
    if isinstance(m, O.FC):
        return f"FC({m.linear.in_features}, {m.linear.out_features}, {m.act_name!r})"
    if isinstance(m, nn.MaxPool2d):
        return f"nn.MaxPool2d({int(m.kernel_size)}, {int(m.stride)})"
    if isinstance(m, nn.AvgPool2d):
        return f"nn.AvgPool2d({int(m.kernel_size)}, {int(m.stride)})"
    if isinstance(m, nn.Flatten):
        return "nn.Flatten()"
    if isinstance(m, nn.Dropout):
        return f"nn.Dropout({float(m.p)!r})"
    if isinstance(m, nn.Linear):
        return f"nn.Linear({m.in_features}, {m.out_features})"
    if isinstance(m, O.TABULAR_OPS):  # ints, floats and tuples of them
        return f"{type(m).__name__}{m.args!r}"
    raise TypeError(f"cannot generate code for {type(m).__name__}")  # the builder makes no others


def _seq_src(seq: nn.Sequential, indent: str) -> str:
    if len(seq) == 0:
        return "nn.Sequential()"
    inner = "".join(f"{indent}    {_ctor(m)},\n" for m in seq)
    return f"nn.Sequential(\n{inner}{indent})"


@functools.cache
def classes_source() -> str:
    """The source of `O.EXPORTED_CLASSES` (the classes and helpers every model.py carries),
    read once per process: `inspect.getsource` of a class parses its whole module again
    (measured: 0.26 s per export on a 2-core machine, 25 s of a test suite's CPU)."""
    return "\n\n".join(inspect.getsource(c) for c in O.EXPORTED_CLASSES)


@functools.cache
def runtime_source() -> str:
    """`nasmt/data/encoding.py` without its docstring: the code model.py's `predict` runs."""
    src = inspect.getsource(encoding)
    doc_end = ast.parse(src).body[0].end_lineno
    body = "\n".join(src.splitlines()[doc_end:]).strip()
    if "nasmt" in body:  # the copied code must stand alone (see the module's docstring)
        raise ValueError("nasmt/data/encoding.py mentions its package below its docstring")
    return body + "\n"


def generate_source(model: O.MultiTaskNet, spec: ArchSpec, title: str) -> str:
    """`model.py` for `model` (built from `spec`); `title` must be safe docstring text."""
    for t in model.branches:
        if not t.isidentifier():  # idents are sanitized at suite load; never emit anything else
            raise ValueError(f"unsafe task identifier {t!r}")
    classes = classes_source()
    indent = " " * 8
    trunk = "".join(f"{indent}{_seq_src(s, indent)},  # stage {i}\n" for i, s in enumerate(model.trunk, 1))
    branches = "".join(f"{indent}{t!r}: {_seq_src(b, indent)},\n" for t, b in model.branches.items())
    taps = ", ".join(f"{t!r}: {k}" for t, k in model.taps.items())
    groups = "".join(f"{indent}{g!r}: {_seq_src(m, indent)},\n" for g, m in model.groups.items())
    for g in model.groups:  # group labels come from the grammar: names or integers
        if not (g.isidentifier() or g.isdigit()):
            raise ValueError(f"unsafe group label {g!r}")
    wiring = (f"groups={{\n{groups}    }}, group_taps={model.group_taps!r}, joins={model.joins!r}, "
              f"slots={model.slots!r}")
    shape = tuple(int(x) for x in spec.input_shape)
    return f'''"""{title}

Generated by nasmt from architecture {spec.hash} (search space '{safe_doc(spec.space)}').
Plain PyTorch: this file does not import nasmt. Usage:

    import model
    net = model.load()                  # weights from {WEIGHTS_FILE} beside this file
    out = net(torch.zeros(1, *model.INPUT_SHAPE))   # -> {{task: raw outputs}}
    preds = model.predict("new.csv")    # raw records -> {{task: labels, probabilities or values}}

`predict` takes a CSV path, a pandas DataFrame or a list of dicts (image models: uint8
images (N, H, W) or float ones in [0, 1], or a .npy path) and encodes them exactly as
the training data was ({PREPROCESSING_FILE} beside this file). CSV files are read with
pandas when it is importable (as in training), else with the csv module. Task
identifiers, their original names, classes and metrics are in arch.json.
"""

import json
from pathlib import Path

import torch
from torch import nn

INPUT_SHAPE = {shape!r}
TASKS = {tuple(model.branches)!r}


{classes}


def build_model():
    trunk = [
{trunk}    ]
    branches = {{
{branches}    }}
    return MultiTaskNet(trunk, branches, taps={{{taps}}}, {wiring})


def load(weights=None, device="cpu"):
    """The network with its trained weights, in eval mode."""
    from safetensors.torch import load_file

    net = build_model()
    path = Path(weights) if weights else Path(__file__).with_name({WEIGHTS_FILE!r})
    net.load_state_dict(load_file(str(path), device=str(device)))
    return net.to(device).eval()


# ---------------------------------------------------------------------------- raw inputs
# The training data's own encoder and output decoder, driven by {PREPROCESSING_FILE}.

{runtime_source()}

def preprocessing(path=None):
    """The fitted input encoding and output decoding ({PREPROCESSING_FILE} beside this file)."""
    path = Path(path) if path else Path(__file__).with_name({PREPROCESSING_FILE!r})
    return json.loads(path.read_text(encoding="utf-8"))


def predict(rows, net=None):
    """Per-task predictions for raw inputs (see the top of this file): multiclass
    {{"label", "probabilities" (N, K), "classes"}}, binary {{"label", "probability" (of
    the positive class), "positive"}}, regression {{"value"}} in the target's units.
    Unseen categories encode as all zeros (one UnseenCategoryWarning counts them); a
    missing column raises InputError."""
    return predict_rows(net if net is not None else load(), preprocessing(), rows)
'''
