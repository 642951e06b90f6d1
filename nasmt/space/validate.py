"""Grammar validation at load: required and undefined rules, unused and recursive
rules, op vocabulary (names, parameters, types, ranges), special-rule shapes, image
ops after vector ops; and a grammar's fit to a task suite. Every error is one line
`file:line:col: message`."""

from __future__ import annotations

from nasmt.errors import GrammarError
from nasmt.space.nodes import RESERVED, Grammar, Item, Op, Ref, Rule
from nasmt.space.vocab import IMAGE_OPS, OPS, VECTOR_OPS


def _refs(rule: Rule):
    for a in rule.alts:
        for it in a.items:
            if isinstance(it.atom, Ref):
                yield it.atom


def _ops(rule: Rule):
    for a in rule.alts:
        for it in a.items:
            if isinstance(it.atom, Op):
                yield it, it.atom


def validate(g: Grammar) -> None:
    """Every check, in the order a user fixes them; the first problem raises."""
    f = g.file
    if not g.rules:
        raise GrammarError(f"{f}:1:1: the grammar defines no rules (need at least 'trunk' and 'branch')")
    for req in ("trunk", "branch"):
        if req not in g.rules:
            raise GrammarError(f"{f}: missing required rule '{req}'")
    _check_references(g)
    _check_recursion(g)
    _check_reachable(g)
    for r in g.rules.values():
        for it, op in _ops(r):
            _check_op(g, r, it, op)
    _check_special_rules(g)
    _check_shapes(g)


def _check_references(g: Grammar) -> None:
    for r in g.rules.values():
        for ref in _refs(r):
            if ref.name not in g.rules:
                hint = f" (to use the op, write {ref.name}(...))" if ref.name in OPS else ""
                raise GrammarError(f"{g.file}:{ref.line}:{ref.col}: undefined rule '{ref.name}'{hint}")


def _check_recursion(g: Grammar) -> None:
    """No cycles in the reference graph (bounded repetition instead)."""
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]):
        state[name] = 1
        for ref in _refs(g.rules[name]):
            if state.get(ref.name) == 1:
                cyc = stack[stack.index(ref.name):] + [ref.name] if ref.name in stack else [name, ref.name]
                raise GrammarError(
                    f"{g.file}:{ref.line}:{ref.col}: rule '{ref.name}' is recursive ({' -> '.join(cyc)}); use bounded repetition like {ref.name}{{1,4}}"
                )
            if state.get(ref.name) is None:
                visit(ref.name, stack + [ref.name])
        state[name] = 2

    for name in g.rules:
        if name not in state:
            visit(name, [name])


def _check_reachable(g: Grammar) -> None:
    """Every rule is used, and the special rules never refer to each other."""
    reach: set[str] = set()
    todo = [r for r in RESERVED if r in g.rules]
    while todo:
        n = todo.pop()
        if n in reach:
            continue
        reach.add(n)
        todo.extend(ref.name for ref in _refs(g.rules[n]))
    for r in g.rules.values():
        if r.name not in reach:
            raise GrammarError(f"{g.file}:{r.line}:{r.col}: rule '{r.name}' is never used (not reachable from trunk, branch or quant)")
    for r in RESERVED:
        if r in g.rules and any(ref.name in RESERVED for ref in _refs(g.rules[r])):
            ref = next(ref for ref in _refs(g.rules[r]) if ref.name in RESERVED)
            raise GrammarError(f"{g.file}:{ref.line}:{ref.col}: rule '{r}' may not refer to the special rule '{ref.name}'")


def _check_op(g: Grammar, r: Rule, it: Item, op: Op) -> None:
    """The op exists, its parameters are known, typed, in range and complete, and it
    stands where its kind may (tap in branch, precision in quant)."""
    f = g.file
    schema = OPS.get(op.name)
    if schema is None:
        hint = " (a rule of that name exists: drop the parentheses)" if op.name in g.rules else ""
        raise GrammarError(f"{f}:{op.line}:{op.col}: unknown op '{op.name}'{hint} (known ops: {', '.join(sorted(OPS))})")
    seen = set()
    for p in op.params:
        if p.name in seen:
            raise GrammarError(f"{f}:{p.line}:{p.col}: {op.name}: parameter '{p.name}' given twice")
        seen.add(p.name)
        ps = schema.params.get(p.name)
        if ps is None:
            known = ", ".join(schema.params) or "none"
            raise GrammarError(f"{f}:{p.line}:{p.col}: {op.name}: unknown parameter '{p.name}' (takes: {known})")
        if len(set(p.choices)) != len(p.choices):
            raise GrammarError(f"{f}:{p.line}:{p.col}: {op.name}.{p.name}: a choice is listed twice")
        for v in p.choices:
            why = ps.check(v)
            if why:
                raise GrammarError(f"{f}:{p.line}:{p.col}: {op.name}.{p.name}={v}: {why}")
    for pname, ps in schema.params.items():
        if ps.default is None and pname not in seen:
            raise GrammarError(f"{f}:{op.line}:{op.col}: {op.name}: missing required parameter '{pname}'")
    if schema.kind == "tap" and r.name != "branch":
        raise GrammarError(f"{f}:{op.line}:{op.col}: tap(...) may only appear in the 'branch' rule")
    if schema.kind == "precision" and r.name != "quant":
        raise GrammarError(f"{f}:{op.line}:{op.col}: precision(...) may only appear in the 'quant' rule")
    if schema.kind in ("tap", "precision") and (it.lo, it.hi) != (1, 1):
        raise GrammarError(f"{f}:{op.line}:{op.col}: {op.name}(...) cannot be repeated or optional")
    if r.name == "quant" and schema.kind != "precision":
        raise GrammarError(f"{f}:{op.line}:{op.col}: the 'quant' rule holds only precision(...) ops")


def _check_special_rules(g: Grammar) -> None:
    """One tap per branch alternative; one precision op per quant alternative."""
    for a in g.rules["branch"].alts:
        taps = [it for it in a.items if isinstance(it.atom, Op) and it.atom.name == "tap"]
        if len(taps) != 1:
            raise GrammarError(
                f"{g.file}:{a.line}:{a.col}: each alternative of 'branch' needs exactly one tap(at=...) (found {len(taps)})"
            )
    if "quant" in g.rules:
        for a in g.rules["quant"].alts:
            if len(a.items) != 1 or not isinstance(a.items[0].atom, Op):
                raise GrammarError(f"{g.file}:{a.line}:{a.col}: each alternative of 'quant' is one precision(...) op")


def _kinds(g: Grammar, name: str, memo: dict) -> tuple[bool, bool]:
    """(may contain an image op, may contain a vector/flatten op) for a rule."""
    if name in memo:
        return memo[name]
    img = vec = False
    for a in g.rules[name].alts:
        for it in a.items:
            i, v = _item_kinds(g, it, memo)
            img, vec = img or i, vec or v
    memo[name] = (img, vec)
    return img, vec


def _item_kinds(g: Grammar, it: Item, memo: dict) -> tuple[bool, bool]:
    if isinstance(it.atom, Ref):
        return _kinds(g, it.atom.name, memo)
    return it.atom.name in IMAGE_OPS, it.atom.name in VECTOR_OPS


def _check_shapes(g: Grammar) -> None:
    """Every derivation must build: no image op may follow a vector op."""
    memo: dict = {}
    f = g.file

    def check_seq(items, trunk_vec: bool):
        vec_seen = trunk_vec
        for it in items:
            img, vec = _item_kinds(g, it, memo)
            if img and vec_seen:
                a = it.atom
                raise GrammarError(
                    f"{f}:{a.line}:{a.col}: '{a.name}' may apply an image op after a vector op "
                    "(gap/flatten/fc); put image ops first"
                )
            if img and vec and it.hi > 1:
                a = it.atom
                raise GrammarError(
                    f"{f}:{a.line}:{a.col}: repeating '{a.name}' may apply an image op after a vector op"
                )
            vec_seen = vec_seen or vec
        return vec_seen

    for r in g.rules.values():
        for a in r.alts:
            check_seq(a.items, False)
    trunk_vec = _kinds(g, "trunk", memo)[1]
    if trunk_vec:
        for a in g.rules["branch"].alts:
            for it in a.items:
                if _item_kinds(g, it, memo)[0]:
                    at = it.atom
                    raise GrammarError(
                        f"{f}:{at.line}:{at.col}: branch may apply an image op to a trunk stage that is already a vector"
                    )


def check_compatible(g: Grammar, image_input: bool, suite_file: str = "<suite>") -> None:
    """Refuse a conv space on vector data (and say which op)."""
    if image_input:
        return
    for r in g.rules.values():
        for it, op in _ops(r):
            if op.name in IMAGE_OPS:
                raise GrammarError(
                    f"{g.file}:{op.line}:{op.col}: op '{op.name}' needs image input, but the task suite "
                    f"{suite_file} gives vectors (use an MLP space such as search_spaces/mlp.grammar)"
                )
