"""Grammar validation at load: required and undefined rules, unused and recursive
rules, op vocabulary (names, parameters, types, ranges), special-rule shapes, image
ops after vector ops; and a grammar's fit to a task suite. Every error is one line
`file:line:col: message`."""

from __future__ import annotations

from nasmt.errors import GrammarError
from nasmt.space.nodes import RESERVED, Grammar, Item, Op, Ref, Rule
from nasmt.space.vocab import IMAGE_OPS, OPS, SOFT_OPS, STEM_OPS, TRAIN_OPS, VECTOR_OPS


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
            raise GrammarError(f"{f}:1:1: missing required rule '{req}'")
    _check_references(g)
    _check_recursion(g)
    _check_reachable(g)
    for r in g.rules.values():
        for it, op in _ops(r):
            _check_op(g, r, it, op)
    _check_special_rules(g)
    _check_trunk_not_empty(g)
    _check_groups(g)
    _check_soft(g)
    _check_shapes(g)
    _check_stem(g)


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
            raise GrammarError(f"{g.file}:{r.line}:{r.col}: rule '{r.name}' is never used (not reachable from trunk, branch, group, quant or train)")
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
    _check_experts(f, op)
    if schema.kind == "tap" and r.name not in ("branch", "group"):
        raise GrammarError(f"{f}:{op.line}:{op.col}: tap(...) may only appear in the 'branch' rule (or the 'group' rule)")
    if schema.kind == "join" and r.name != "branch":
        raise GrammarError(f"{f}:{op.line}:{op.col}: join(...) may only appear in the 'branch' rule")
    if schema.kind == "train" and r.name != "train":
        raise GrammarError(f"{f}:{op.line}:{op.col}: {op.name}(...) may only appear in the 'train' rule")
    if r.name == "train" and schema.kind != "train":
        raise GrammarError(f"{f}:{op.line}:{op.col}: the 'train' rule holds only {', '.join(n + '(...)' for n in TRAIN_OPS)} ops")
    if schema.kind == "precision" and r.name != "quant":
        raise GrammarError(f"{f}:{op.line}:{op.col}: precision(...) may only appear in the 'quant' rule")
    if schema.kind in ("tap", "join", "precision", "train", "soft") and (it.lo, it.hi) != (1, 1):
        raise GrammarError(f"{f}:{op.line}:{op.col}: {op.name}(...) cannot be repeated or optional")
    if r.name == "quant" and schema.kind != "precision":
        raise GrammarError(f"{f}:{op.line}:{op.col}: the 'quant' rule holds only precision(...) ops")


def _check_experts(f: str, op: Op) -> None:
    """Every gate of an expert mixture has experts to mix; an ensemble has members."""
    if op.name == "ensemble" and 0 in op.param("k").choices:
        p = op.param("k")
        raise GrammarError(f"{f}:{p.line}:{p.col}: ensemble.k=0: an ensemble needs at least 1 member")
    if op.name == "mmoe" and 0 in op.param("n").choices:
        p = op.param("n")
        raise GrammarError(f"{f}:{p.line}:{p.col}: mmoe.n=0: an expert count must be at least 1 (a gate with no experts)")
    if op.name == "ple":
        shared, own = op.param("shared"), op.param("own")
        if 0 in shared.choices and 0 in own.choices:
            raise GrammarError(
                f"{f}:{shared.line}:{shared.col}: ple: shared=0 with own=0 leaves a gate with no experts "
                "(give shared or own a choice of at least 1)"
            )


def _direct(a, kinds: tuple[str, ...]) -> list[Item]:
    return [it for it in a.items if isinstance(it.atom, Op) and OPS[it.atom.name].kind in kinds]


def _check_special_rules(g: Grammar) -> None:
    """One tap (or join) per branch alternative, one tap per group alternative; one
    precision op per quant alternative; balance/optim at most once in a train alternative."""
    for a in g.rules["branch"].alts:
        taps = _direct(a, ("tap", "join"))
        if len(taps) != 1:
            raise GrammarError(
                f"{g.file}:{a.line}:{a.col}: each alternative of 'branch' needs exactly one tap(at=...) "
                f"or join(group=...) (found {len(taps)})"
            )
    if "group" in g.rules:
        for a in g.rules["group"].alts:
            taps = _direct(a, ("tap",))
            if len(taps) != 1:
                raise GrammarError(
                    f"{g.file}:{a.line}:{a.col}: each alternative of 'group' needs exactly one tap(at=...) (found {len(taps)})"
                )
    if "train" in g.rules:
        for a in g.rules["train"].alts:
            names = [it.atom.name for it in _direct(a, ("train",))]
            for it in a.items:
                if isinstance(it.atom, Ref) or names.count(it.atom.name) > 1:
                    at = it.atom
                    raise GrammarError(f"{g.file}:{at.line}:{at.col}: each alternative of 'train' holds each of "
                                       f"{', '.join(n + '(...)' for n in TRAIN_OPS)} at most once, written directly")
    if "quant" in g.rules:
        for a in g.rules["quant"].alts:
            if len(a.items) != 1 or not isinstance(a.items[0].atom, Op):
                raise GrammarError(f"{g.file}:{a.line}:{a.col}: each alternative of 'quant' is one precision(...) op")


def _check_trunk_not_empty(g: Grammar) -> None:
    """Each item of a trunk alternative is one stage (repeated lo..hi times): an
    alternative whose items may all be left out derives a network with no trunk at all,
    which no branch could tap."""
    for a in g.rules["trunk"].alts:
        if sum(it.lo for it in a.items) == 0:
            raise GrammarError(f"{g.file}:{a.line}:{a.col}: trunk can derive no stage (every item of this alternative "
                               "is optional: `?` or a repetition from 0); make at least one item required")


def _check_groups(g: Grammar) -> None:
    """Task groups are defined and joined together: a 'group' rule some branch can join,
    and every join naming the same groups (the decision branch.<task>.group keeps one domain)."""
    joins = [op for _, op in _ops(g.rules["branch"]) if op.name == "join"]
    if "group" in g.rules and not joins:
        r = g.rules["group"]
        raise GrammarError(f"{g.file}:{r.line}:{r.col}: rule 'group' defines task groups but no task can use one "
                           "(add join(group=...) to the 'branch' rule)")
    if joins and "group" not in g.rules:
        raise GrammarError(f"{g.file}:{joins[0].line}:{joins[0].col}: join(...) needs a 'group' rule (its tap and layers)")
    for op in joins[1:]:
        if tuple(map(str, op.param("group").choices)) != tuple(map(str, joins[0].param("group").choices)):
            p = op.param("group")
            raise GrammarError(f"{g.file}:{p.line}:{p.col}: join.group: every join(...) must list the same groups "
                               f"(the first lists {'|'.join(map(str, joins[0].param('group').choices))})")


def _check_soft(g: Grammar) -> None:
    """An expert mixture ends the trunk: it is the last item of a trunk alternative, or
    the sole item of an alternative of a rule that is; never repeated."""
    allowed: set[int] = set()
    for a in g.rules["trunk"].alts:
        last = a.items[-1]
        if isinstance(last.atom, Op):
            allowed.add(id(last.atom))
        elif last.hi == 1:
            for sub in g.rules[last.atom.name].alts:
                if len(sub.items) == 1 and isinstance(sub.items[0].atom, Op):
                    allowed.add(id(sub.items[0].atom))
    for r in g.rules.values():
        for _, op in _ops(r):
            if op.name in SOFT_OPS and id(op) not in allowed:
                raise GrammarError(
                    f"{g.file}:{op.line}:{op.col}: {op.name}(...) must end the trunk: write it as the last item of "
                    "'trunk' (or as the only item of an alternative of the rule trunk ends with, not repeated)"
                )


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


def _stem_kinds(g: Grammar, name: str, memo: dict) -> tuple[bool, bool, bool]:
    """(may contain an embedding, may contain ensemble, may contain any other op but
    identity) for a rule."""
    if name in memo:
        return memo[name]
    memo[name] = (False, False, False)
    acc = [False, False, False]
    for a in g.rules[name].alts:
        for it in a.items:
            acc = [x or y for x, y in zip(acc, _stem_item(g, it, memo))]
    memo[name] = tuple(acc)
    return memo[name]


def _stem_item(g: Grammar, it: Item, memo: dict) -> tuple[bool, bool, bool]:
    if isinstance(it.atom, Ref):
        return _stem_kinds(g, it.atom.name, memo)
    n = it.atom.name
    return n in STEM_OPS and n != "ensemble", n == "ensemble", n not in STEM_OPS and n != "identity"


def _check_stem(g: Grammar) -> None:
    """The tabular input ops (embeddings, ensemble) read the raw columns: they stand in the
    first item of the trunk (its first stage), embeddings before the ensemble and both
    before every other op, none repeated; nowhere else."""
    memo: dict = {}
    f = g.file
    for r in g.rules.values():
        for a in r.alts:
            seen_other = seen_ens = False
            for it in a.items:
                emb, ens, other = _stem_item(g, it, memo)
                at = it.atom
                if (emb or ens) and (seen_other or seen_ens and emb):
                    raise GrammarError(f"{f}:{at.line}:{at.col}: '{at.name}' may apply a tabular input op after "
                                       f"{'an ensemble' if seen_ens else 'another op'}; embeddings come first, then ensemble, then the rest")
                if (emb or ens) and it.hi > 1:
                    raise GrammarError(f"{f}:{at.line}:{at.col}: a tabular input op ('{at.name}') cannot be repeated")
                seen_other, seen_ens = seen_other or other, seen_ens or ens
    starts = []  # items that do not begin the trunk: later trunk items, branch and group items
    for name in ("trunk", "branch", "group"):
        for a in g.rules[name].alts if name in g.rules else ():
            starts += a.items[1:] if name == "trunk" else a.items
    for it in starts:
        emb, ens, _ = _stem_item(g, it, memo)
        if emb or ens:
            raise GrammarError(f"{f}:{it.atom.line}:{it.atom.col}: '{it.atom.name}' may place a tabular input op "
                               "(periodic, plenc, catembed, ensemble) outside the trunk's first item (its first stage)")


def check_compatible(g: Grammar, image_input: bool, suite_file: str = "<suite>") -> None:
    """Refuse a conv space on vector data and a tabular input op on images (and say which op)."""
    if image_input:
        for r in g.rules.values():
            for it, op in _ops(r):
                if op.name in STEM_OPS:
                    raise GrammarError(f"{g.file}:{op.line}:{op.col}: op '{op.name}' needs tabular input (raw columns), "
                                       f"but the task suite {suite_file} gives images")
        return
    for r in g.rules.values():
        for it, op in _ops(r):
            if op.name in IMAGE_OPS:
                raise GrammarError(
                    f"{g.file}:{op.line}:{op.col}: op '{op.name}' needs image input, but the task suite "
                    f"{suite_file} gives vectors (use an MLP space such as search_spaces/mlp.grammar)"
                )
