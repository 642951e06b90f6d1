"""The grammar as data: frozen dataclasses with source positions (no parsing here).

A `Grammar` maps rule names to `Rule`s; a rule has alternatives (`Alt`), an alternative
has items (`Item`: an `Op` with `Param` choices or a `Ref` to a rule, repeated lo..hi
times)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from itertools import accumulate

from nasmt.space.vocab import IMAGE_OPS

MAX_REPEAT = 16  # the largest repetition count a grammar may ask for
RESERVED = ("trunk", "branch", "quant", "group", "train")  # rule names with a meaning of their own


@dataclass(frozen=True)
class Param:
    name: str
    choices: tuple  # of int | float | str
    line: int
    col: int


@dataclass(frozen=True)
class Op:
    name: str
    params: tuple[Param, ...]
    line: int
    col: int

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True)
class Ref:
    name: str
    line: int
    col: int


@dataclass(frozen=True)
class Item:
    atom: Op | Ref
    lo: int = 1
    hi: int = 1
    key: str = ""  # name of this item in decision paths, unique in its alternative


@dataclass(frozen=True)
class Alt:
    items: tuple[Item, ...]
    weight: float | None
    label: str  # unique in its rule; the value of the rule's `.alt` decision
    line: int
    col: int


@dataclass(frozen=True)
class Rule:
    name: str
    alts: tuple[Alt, ...]
    line: int
    col: int

    @property
    def weighted(self) -> bool:
        return any(a.weight is not None for a in self.alts)

    def pick(self, u: float) -> "Alt":
        """The alternative a weighted rule's float decision `u` in [0, 1) selects: `u`
        mapped through the cumulative weights (so uniform samplers honour the PCFG).
        The one definition of this mapping; derivation and the report both use it."""
        cum = list(accumulate(self._weights()))
        return self.alts[min(bisect.bisect_right(cum, u * cum[-1]), len(self.alts) - 1)]

    def answer(self, label: str):
        """The value of this rule's `.alt` decision that chooses the alternative `label`:
        the label itself, or for a weighted rule the middle of its slice of [0, 1) (`pick`
        inverted)."""
        if not self.weighted:
            return label
        w = self._weights()
        i = next(j for j, a in enumerate(self.alts) if a.label == label)
        return (sum(w[:i]) + w[i] / 2) / sum(w)

    def _weights(self) -> list[float]:
        return [a.weight if a.weight is not None else 1.0 for a in self.alts]


@dataclass(frozen=True)
class Grammar:
    name: str
    rules: dict  # name -> Rule (insertion ordered)
    file: str
    text: str

    def rule(self, name: str) -> Rule:
        return self.rules[name]

    @property
    def has_quant(self) -> bool:
        return "quant" in self.rules

    def uses_image_ops(self) -> bool:
        return any(
            isinstance(it.atom, Op) and it.atom.name in IMAGE_OPS
            for r in self.rules.values()
            for a in r.alts
            for it in a.items
        )
