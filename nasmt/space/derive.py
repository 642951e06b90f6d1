"""Derivation: walk a grammar, asking an Optuna trial for every decision.

Decision names are derivation paths (`trunk.stage.2.block.1.conv.k`,
`branch.left.tap`, `quant.stage1.w`); a name's domain is the same in every trial. Rules
with alternative weights use a float decision in [0, 1) mapped through the cumulative
weights, so uniform samplers honour the PCFG; other choices are categoricals of
str/int/float labels. Works with `optuna.trial.Trial`, `FixedTrial` (replay) and Ray's
define-by-run captor alike. Every derivation builds: nothing here retries.
"""

from __future__ import annotations


from nasmt.space.nodes import Grammar, Item, Op, Ref
from nasmt.space.spec import ArchSpec, BranchSpec, GroupSpec, OpSpec, Precision, StageSpec, TrainSpec
from nasmt.space.vocab import EMBED_OPS, OPS


class _Recorder:
    """Wraps a trial, recording each decision in order (the genome)."""

    def __init__(self, trial):
        self.trial = trial
        self.genome: dict = {}

    def categorical(self, name: str, choices: list):
        if len(choices) == 1:
            return choices[0]
        v = self.trial.suggest_categorical(name, list(choices))
        self.genome[name] = v
        return v

    def uniform(self, name: str) -> float:
        v = self.trial.suggest_float(name, 0.0, 1.0)
        self.genome[name] = v
        return v


def _typed(choices: tuple) -> list:
    """Categorical labels of one type: ints, else floats, else strings."""
    if all(isinstance(c, int) for c in choices):
        return list(choices)
    if all(isinstance(c, (int, float)) for c in choices):
        return [float(c) for c in choices]
    return [str(c) for c in choices]


class _Walker:
    def __init__(self, g: Grammar, rec: _Recorder):
        self.g = g
        self.rec = rec

    def choose(self, name: str, path: str):
        """The alternative of rule `name` at `path`, and the path its items hang under."""
        r = self.g.rules[name]
        if len(r.alts) == 1:
            return r.alts[0], path
        if r.weighted:
            u = self.rec.uniform(f"{path}.alt")
            alt = r.pick(u)
        else:
            label = self.rec.categorical(f"{path}.alt", [a.label for a in r.alts])
            alt = next(a for a in r.alts if a.label == label)
        return alt, f"{path}.{alt.label}"

    def rule(self, name: str, path: str, out: list, tag: str):
        alt, base = self.choose(name, path)
        single = len(alt.items) == 1 and len(self.g.rules[name].alts) > 1
        for it in alt.items:
            self.item(it, base, out, "head" if name == "head" else tag, skip_key=single)

    def count(self, it: Item, path: str) -> int:
        if it.lo == it.hi:
            return it.lo
        return int(self.rec.categorical(f"{path}.n", list(range(it.lo, it.hi + 1))))

    def instances(self, it: Item, path: str, skip_key: bool = False) -> list[str]:
        """Paths of the instances of a (possibly repeated) item; decides the count."""
        p = path if skip_key else f"{path}.{it.key}"
        return [f"{p}.{j}" if it.hi > 1 else p for j in range(self.count(it, p))]

    def expand(self, it: Item, path: str, out: list, tag: str):
        if isinstance(it.atom, Ref):
            self.rule(it.atom.name, path, out, tag)
        else:
            out.append((tag, self.op(it.atom, path)))

    def item(self, it: Item, path: str, out: list, tag: str, skip_key: bool = False):
        for ip in self.instances(it, path, skip_key):
            self.expand(it, ip, out, tag)

    def op(self, op: Op, path: str) -> OpSpec:
        schema = OPS[op.name]
        vals = {}
        for pname, ps in schema.params.items():
            p = op.param(pname)
            if p is None:
                vals[pname] = ps.default
            else:
                if op.name == "join":  # branch.<task>.group, whichever alternative holds it
                    name = ".".join(path.split(".")[:2]) + ".group"
                elif op.name == "tap":  # branch.<task>.tap, group.<k>.tap
                    name = path
                elif op.name == "precision":  # quant.<stage|task>.w
                    name = f"{path.removesuffix('.precision')}.{pname}"
                else:
                    name = f"{path}.{pname}"
                vals[pname] = self.rec.categorical(name, _typed(p.choices))
        return OpSpec(op.name, tuple(sorted(vals.items())))

    def stages(self) -> list[list[OpSpec]]:
        """Each item instance of trunk's chosen alternative is one stage."""
        alt, base = self.choose("trunk", "trunk")
        stages = []
        for it in alt.items:
            for ip in self.instances(it, base):
                ops: list = []
                self.expand(it, ip, ops, "trunk")
                stages.append([o for _, o in ops])
        return stages

    def precision(self, path: str) -> Precision:
        if "quant" not in self.g.rules:
            return Precision()
        ops: list = []
        self.rule("quant", path, ops, "quant")
        (_, op), = ops
        return Precision(w=op.get("w"), a=op.get("a"))


def group_labels(grammar: Grammar) -> list[str]:
    """The task groups a branch may join, in the order join(group=...) lists them."""
    for a in grammar.rules["branch"].alts:
        for it in a.items:
            if isinstance(it.atom, Op) and it.atom.name == "join":
                return [str(c) for c in it.atom.param("group").choices]
    return []


def _tap(ops: list, n: int) -> int:
    """The 1-based stage a tap(at=...) among `ops` reads, clamped to the trunk's depth."""
    at = next(o for _, o in ops if o.op == "tap").get("at")
    return n if at == "last" else max(1, min(int(at), n))


def _groups(w: _Walker, labels: list[str], n: int) -> list[list]:
    """[label, tap, layers] of every joined group, in the grammar's order."""
    out = []
    for label in labels:
        ops: list = []
        w.rule("group", f"group.{label}", ops, "layer")
        out.append([label, _tap(ops, n), tuple(o for _, o in ops if o.op != "tap")])
    return out


def _train(w: _Walker) -> TrainSpec | None:
    if "train" not in w.g.rules:
        return None
    ops: list = []
    w.rule("train", "train", ops, "train")
    got = {o.op: o for _, o in ops}
    bal, opt, sch = got.get("balance"), got.get("optim"), got.get("schedule")
    early, batch, reg = got.get("early"), got.get("batch"), got.get("regloss")
    return TrainSpec(balance=bal.get("method") if bal else "equal",
                     lr=float(opt.get("lr")) if opt else None, wd=float(opt.get("wd")) if opt else None,
                     schedule=str(sch.get("kind")) if sch else None, warmup=float(sch.get("warmup")) if sch else None,
                     patience=int(early.get("patience")) if early else None,
                     batch_size=int(batch.get("size")) if batch else None, reg_loss=str(reg.get("fn")) if reg else None)


def derive(grammar: Grammar, trial, tasks, input_shape: tuple[int, ...], n_outputs: dict[str, int],
           columns: tuple[int, ...] = ()) -> ArchSpec:
    """Walk `grammar` with `trial`; `tasks` are TaskDefs (or idents) in suite order;
    `columns` the tabular input layout (`PreparedData.columns`), which the spec carries
    when one of its ops reads it (an embedding). Decision order: trunk, branches, joined
    groups, precisions, train."""
    rec = _Recorder(trial)
    w = _Walker(grammar, rec)
    stages = w.stages()
    n = len(stages)
    branches = []
    for t in tasks:
        ident = getattr(t, "ident", t)
        ops: list = []
        w.rule("branch", f"branch.{ident}", ops, "layer")
        join = next((o for _, o in ops if o.op == "join"), None)
        group = str(join.get("group")) if join is not None else None
        tap = _tap(ops, n) if join is None else 0
        layers = tuple(o for tag, o in ops if tag == "layer" and o.op not in ("tap", "join"))
        head = tuple(o for tag, o in ops if tag == "head")
        branches.append([ident, tap, layers, head, group])
    joined = {b[4] for b in branches}
    groups = _groups(w, [g for g in group_labels(grammar) if g in joined], n)
    group_tap = {label: tap for label, tap, _ in groups}
    for b in branches:
        if b[4] is not None:
            b[1] = group_tap[b[4]]
    used = max(b[1] for b in branches)
    stage_specs = tuple(StageSpec(tuple(stages[i]), w.precision(f"quant.stage{i + 1}")) for i in range(used))
    group_specs = tuple(GroupSpec(label, tap, layers, w.precision(f"quant.group.{label}")) for label, tap, layers in groups)
    ens = any(o.op == "ensemble" for st in stage_specs for o in st.ops)  # its members average by task kind
    kinds = {getattr(t, "ident", t): getattr(t, "kind", None) for t in tasks} if ens else {}
    branch_specs = tuple(
        BranchSpec(ident, tap, layers, head, int(n_outputs[ident]), w.precision(f"quant.{ident}"), group,
                   kind=kinds.get(ident))
        for ident, tap, layers, head, group in branches
    )
    train = _train(w)  # before the genome is read off the recorder
    embeds = any(o.op in EMBED_OPS for st in stage_specs for o in st.ops)
    if embeds and not columns:
        raise ValueError("an embedding op needs the tabular column layout (derive(..., columns=data.columns))")
    return ArchSpec(
        space=grammar.name,
        input_shape=tuple(int(x) for x in input_shape),
        stages=stage_specs,
        branches=branch_specs,
        genome=tuple(sorted(rec.genome.items())),
        groups=group_specs,
        train=train,
        columns=tuple(int(c) for c in columns) if embeds else (),
    )


def replay(grammar: Grammar, genome: dict, tasks, input_shape, n_outputs, columns: tuple[int, ...] = ()) -> ArchSpec:
    """Rebuild the ArchSpec a genome came from (optuna FixedTrial)."""
    import optuna

    return derive(grammar, optuna.trial.FixedTrial(dict(genome)), tasks, input_shape, n_outputs, columns)


class _Strict:
    """A trial that answers from a genome and refuses anything the grammar would not
    produce: a missing decision, or a value outside the decision's domain."""

    def __init__(self, genome: dict):
        self.genome = genome

    def _get(self, name: str):
        if name not in self.genome:
            raise ValueError(f"decision {name} is missing")
        return self.genome[name]

    def suggest_categorical(self, name: str, choices: list):
        v = self._get(name)
        if isinstance(v, bool) or v not in choices:
            raise ValueError(f"decision {name}: {v!r} is not one of {choices}")
        return v

    def suggest_float(self, name: str, low: float, high: float) -> float:
        v = self._get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
            raise ValueError(f"decision {name}: {v!r} is not a number in [{low}, {high}]")
        return float(v)


def check_genome(grammar: Grammar, genome: dict, tasks, input_shape, n_outputs, columns: tuple[int, ...] = ()) -> ArchSpec:
    """The ArchSpec of `genome` if it is exactly a derivation of `grammar` for these
    tasks (every decision present and in its domain, none left over); else ValueError
    naming the first offending decision."""
    if not isinstance(genome, dict):
        raise ValueError("a genome is a JSON object of decisions")
    spec = derive(grammar, _Strict(genome), tasks, input_shape, n_outputs, columns)
    extra = sorted(set(genome) - set(spec.genome_dict))
    if extra:
        raise ValueError(f"decision {extra[0]} is not made by this grammar for these tasks")
    return spec
