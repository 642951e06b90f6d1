"""Torch modules for the op vocabulary, and the multi-task network.

Everything in this file depends on torch alone: `nasmt.export` copies the source of
these classes into the generated `model.py`, so an exported model never imports nasmt.
"""

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


class MultiTaskNet(nn.Module):
    """Shared trunk of stages; each task's branch reads the output of one stage.

    `taps[task]` is the 1-based stage index a task reads. forward -> {task: output}.
    """

    def __init__(self, trunk: list, branches: dict, taps: dict):
        super().__init__()
        self.trunk = nn.ModuleList(trunk)
        self.branches = nn.ModuleDict(branches)
        self.taps = dict(taps)

    def forward(self, x):
        feats = []
        for stage in self.trunk:
            x = stage(x)
            feats.append(x)
        return {task: branch(feats[self.taps[task] - 1]) for task, branch in self.branches.items()}


# The classes model.py needs, in definition order.
EXPORTED_CLASSES = (ConvBNAct, DWSep, Residual, GlobalPool, FC, MultiTaskNet)
