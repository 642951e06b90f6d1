"""The nasmt grammar language: a probabilistic context-free grammar over ops.

    # comments run to the end of the line
    trunk   = stem stage{2,4}                 # each item of `trunk` is one stage
    stem    = conv(k=3, c=16|32)
    stage   = block{1,2} maxpool(k=2)
    block   = conv(k=3|5, c=32|64) [3]        # [w]: alternative weight (PCFG)
            | dwsep(k=3|5, c=32|64) [1]       # a line starting with | continues the rule
    branch  = tap(at=1|2|last) conv(k=3, c=32)? head
    head    = gap() fc(h=32|64)?
    quant   = precision(w=fp32|bf16|int8|int4, a=fp32|int8)

Special rules: `trunk` (required; every item instance of its chosen alternative is one
stage), `branch` (required; derived once per task; each alternative holds exactly one
`tap(...)`), `quant` (optional; derived once per used stage and per task branch; holds
one `precision(...)`; without it everything is fp32). Ops under a rule named `head`
form a branch's head; the output layer (size from the task) is added by the builder.

Repetition: `x{lo,hi}`, `x{n}`, `x?` (= `x{0,1}`). Recursion is rejected: use repetition.

`load_grammar` parses and validates (pure data, no torch); errors carry file:line:col.
"""

from __future__ import annotations

import re
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import VisitError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from nasmt.errors import GrammarError
from nasmt.space.nodes import MAX_REPEAT, Alt, Grammar, Item, Op, Param, Ref, Rule
from nasmt.space.validate import validate


_LARK = r"""
start: (rule | _NL)*
rule: NAME "=" alts _NL
alts: alt (_OR alt)*
alt: item* weight?
weight: "[" NUM "]"
item: atom repeat?
atom: NAME "(" [param ("," param)*] ")"   -> op
    | NAME                               -> ref
repeat: "{" NUM "," NUM "}"              -> rep_range
      | "{" NUM "}"                      -> rep_exact
      | "?"                              -> rep_opt
param: NAME "=" value (_OR value)*
value: NUM | NAME

_OR: "|"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUM: /[-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?/
_NL: /(\r?\n)+/
COMMENT: /#[^\n]*/
%ignore COMMENT
%ignore /[ \t\f]+/
"""

_TOKEN_WORDS = {
    "_NL": "end of line",
    "_OR": "'|'",
    "NAME": "a name",
    "NUM": "a number",
    "EQUAL": "'='",
    "LPAR": "'('",
    "RPAR": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "QMARK": "'?'",
    "$END": "end of file",
}


class _Continuations:
    """Post-lexer: a newline followed by `|` continues the rule (drop the newline)."""

    always_accept = ("_NL",)

    def process(self, stream):
        pending = None
        for tok in stream:
            if tok.type == "_NL":
                pending = pending or tok
                continue
            if pending is not None:
                if tok.type != "_OR":
                    yield pending
                pending = None
            yield tok
        if pending is not None:
            yield pending


_PARSER = Lark(_LARK, parser="lalr", lexer="basic", postlex=_Continuations(), propagate_positions=True, maybe_placeholders=False)


# ----------------------------------------------------------------------------- parse


def _num(tok: Token):
    s = str(tok)
    if re.fullmatch(r"[-+]?[0-9]+", s):
        return int(s)
    return float(s)


class _RepeatCount(Exception):
    def __init__(self, tok):
        self.tok = tok


def _count(tok: Token) -> int:
    if not re.fullmatch(r"[0-9]+", str(tok)):
        raise _RepeatCount(tok)
    return int(str(tok))


@v_args(meta=True)
class _Build(Transformer):
    def start(self, meta, rules):
        return list(rules)

    def rule(self, meta, ch):
        name, alts = ch
        return (str(name), alts, name.line, name.column)

    def alts(self, meta, ch):
        return list(ch)

    def alt(self, meta, ch):
        weight = None
        items = []
        for c in ch:
            if isinstance(c, tuple) and c and c[0] == "weight":
                weight = c
            else:
                items.append(c)
        line = getattr(meta, "line", 0) if not meta.empty else 0
        col = getattr(meta, "column", 0) if not meta.empty else 0
        return (items, weight, line, col)

    def weight(self, meta, ch):
        (tok,) = ch
        return ("weight", _num(tok), tok.line, tok.column)

    def item(self, meta, ch):
        atom = ch[0]
        lo, hi = (1, 1) if len(ch) == 1 else ch[1][:2]
        rep = None if len(ch) == 1 else ch[1]
        return (atom, lo, hi, rep)

    def op(self, meta, ch):
        name = ch[0]
        params = tuple(c for c in ch[1:] if c is not None)
        return Op(str(name), params, name.line, name.column)

    def ref(self, meta, ch):
        (name,) = ch
        return Ref(str(name), name.line, name.column)

    def rep_range(self, meta, ch):
        return (_count(ch[0]), _count(ch[1]), ch[0].line, ch[0].column)

    def rep_exact(self, meta, ch):
        return (_count(ch[0]), _count(ch[0]), ch[0].line, ch[0].column)

    def rep_opt(self, meta, ch):
        return (0, 1, meta.line, meta.column)

    def param(self, meta, ch):
        name = ch[0]
        return Param(str(name), tuple(ch[1:]), name.line, name.column)

    def value(self, meta, ch):
        (tok,) = ch
        return str(tok) if tok.type == "NAME" else _num(tok)


def _syntax_error(file: str, text: str, e: UnexpectedInput) -> GrammarError:
    line, col = getattr(e, "line", 0), getattr(e, "column", 0)
    if isinstance(e, UnexpectedCharacters):
        ch = text.splitlines()[line - 1][col - 1 : col] if line > 0 else "?"
        msg = f"unexpected character {ch!r}"
    elif isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            msg = "unexpected end of file"
        elif tok.type == "_NL":
            msg = "unexpected end of line"
        else:
            msg = f"unexpected {str(tok)!r}"
        expected = sorted({_TOKEN_WORDS.get(t, t) for t in e.expected if not t.startswith("__")})
        if expected and len(expected) <= 6:
            msg += f" (expected {', '.join(expected)})"
        if line in (None, -1) or tok.type == "$END":
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
    elif isinstance(e, UnexpectedEOF):
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        msg = "unexpected end of file"
    else:  # pragma: no cover
        msg = str(e).splitlines()[0]
    return GrammarError(f"{file}:{line}:{col}: syntax error: {msg}")


def parse_grammar(text: str, file: str = "<grammar>", name: str | None = None) -> Grammar:
    """Parse and validate grammar text. Raises GrammarError (file:line:col: message)."""
    if not isinstance(text, str):
        raise GrammarError(f"{file}: grammar text must be a string")
    if "\x00" in text:
        before = text[: text.index("\x00")].split("\n")
        raise GrammarError(f"{file}:{len(before)}:{len(before[-1]) + 1}: not a text file (NUL byte)")
    src = text if text.endswith("\n") else text + "\n"
    try:
        tree = _PARSER.parse(src)
    except UnexpectedInput as e:
        raise _syntax_error(file, src, e) from None
    try:
        raw_rules = _Build().transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, _RepeatCount):
            t = e.orig_exc.tok
            raise GrammarError(f"{file}:{t.line}:{t.column}: repetition count must be a non-negative integer (got {t})") from None
        raise
    rules: dict[str, Rule] = {}
    for rname, raw_alts, line, col in raw_rules:
        if rname in rules:
            raise GrammarError(f"{file}:{line}:{col}: rule '{rname}' is defined twice (first at line {rules[rname].line})")
        rules[rname] = Rule(rname, _alts(file, rname, raw_alts, line, col), line, col)
    g = Grammar(name=name or Path(file).stem, rules=rules, file=file, text=text)
    validate(g)
    return g


def _numbered(names: list[str]) -> list[str]:
    """Names made unique in their list: a name used more than once gets 1, 2, ... appended."""
    total = {n: names.count(n) for n in names}
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if total[n] > 1:
            seen[n] = seen.get(n, 0) + 1
            n = f"{n}{seen[n]}"
        out.append(n)
    return out


def _items(file: str, items_raw) -> list[Item]:
    """Checked repetitions; each item keyed by its atom's name, numbered when repeated."""
    for atom, lo, hi, rep in items_raw:
        if rep is None:
            continue
        where = f"{file}:{rep[2]}:{rep[3]}: repetition"
        if lo > hi:
            raise GrammarError(f"{where} {{{lo},{hi}}}: lower bound exceeds upper bound")
        if hi == 0:
            raise GrammarError(f"{where} {{{lo},{hi}}} never produces anything")
        if hi > MAX_REPEAT:
            raise GrammarError(f"{where} upper bound {hi} exceeds {MAX_REPEAT}")
    keys = _numbered([atom.name for atom, *_ in items_raw])
    return [Item(atom, lo, hi, key) for (atom, lo, hi, _), key in zip(items_raw, keys)]


def _alts(file: str, rname: str, raw_alts, line: int, col: int) -> tuple[Alt, ...]:
    """A rule's alternatives, labelled by their first atom (numbered when shared)."""
    alts = []
    for items_raw, weight, aline, acol in raw_alts:
        items = _items(file, items_raw)
        if not items:
            raise GrammarError(f"{file}:{aline or line}:{acol or col}: rule '{rname}' has an empty alternative (write identity() for 'nothing')")
        w = None
        if weight is not None:
            w = float(weight[1])
            if not w > 0:
                raise GrammarError(f"{file}:{weight[2]}:{weight[3]}: alternative weight must be positive (got {weight[1]})")
        alts.append((items, w, aline or items[0].atom.line, acol or items[0].atom.col))
    labels = _numbered([items[0].atom.name for items, *_ in alts])
    return tuple(Alt(tuple(items), w, label, al, ac) for (items, w, al, ac), label in zip(alts, labels))


def load_grammar(path: str | Path) -> Grammar:
    path = Path(path)
    if not path.is_file():
        raise GrammarError(f"{path}: grammar file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GrammarError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    return parse_grammar(text, file=str(path))
