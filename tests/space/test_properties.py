"""Property-based tests (hypothesis): whatever text a user hands nasmt, only nasmt's own
error escapes, as one line naming where: a grammar is refused with a `GrammarError`
reading `FILE:LINE:COL: what` (a place inside the text), a task suite with a `SuiteError`
starting with its file; and every grammar that validates derives and builds.

Models are built on torch's `meta` device: shapes are checked, no memory is allocated,
so a mutation that asks for 4096 channels costs nothing.
"""

from __future__ import annotations

import re
import string
import tempfile
from pathlib import Path

import optuna
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from nasmt.model.build import build
from nasmt.space.derive import derive, replay
from nasmt.errors import GrammarError, SuiteError
from nasmt.space.grammar import parse_grammar
from nasmt.data.suite import load_suite, suite_from_dict

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACES = {p.stem: p.read_text(encoding="utf-8") for p in sorted((ROOT / "search_spaces").glob("*.grammar"))}
SUITES = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "tasks").glob("*.toml"))}
SUITES["mm_small.toml"] = (ROOT / "tests" / "data" / "mm_small.toml").read_text(encoding="utf-8")
FAST = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
BUILD = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

GRAMMAR_CHARS = "()=|{},?[]#.-+_ \t\n" + string.ascii_lowercase[:20] + string.digits
GRAMMAR_WORDS = [
    "trunk", "branch", "quant", "stage", "head", "block", "conv", "dwsep", "residual", "maxpool", "avgpool",
    "gap", "flatten", "fc", "dropout", "identity", "tap", "precision", "k", "c", "s", "h", "p", "w", "a", "at",
    "last", "int8", "fp32", "bf16", "int4", "relu", "gelu", "0", "1", "2", "3", "5", "16", "64", "4096", "99",
    "-1", "0.5", "1e3", "=", "|", "(", ")", "{", "}", ",", "?", "[", "]", "\n", " ", "#", "{1,3}", "{0}", "\n|",
]


def _tokens(text: str) -> list[str]:
    out, cur = [], ""
    for ch in text:
        if ch.isalnum() or ch in "_.":
            cur += ch
        else:
            if cur:
                out.append(cur)
                cur = ""
            out.append(ch)
    if cur:
        out.append(cur)
    return out


def assert_grammar_error(e: Exception, file: str, text: str) -> None:
    """`e` is the one-line `FILE:LINE:COL: message` GrammarError the CLI prints, and
    LINE:COL lies in `text` (or just past its end: "unexpected end of file")."""
    assert isinstance(e, GrammarError), f"{type(e).__name__} escaped: {e!r}"
    msg = str(e)
    assert len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, f"not one line: {msg!r}"
    m = re.match(re.escape(file) + r":(\d+):(\d+): \S", msg)
    assert m, f"does not start with {file}:line:col: {msg!r}"
    line, col = int(m[1]), int(m[2])
    lines = text.split("\n")
    assert 1 <= line <= len(lines) + 1, f"line {line} outside the {len(lines)}-line text: {msg!r}"
    width = len(lines[line - 1]) if line <= len(lines) else 0
    assert 1 <= col <= width + 1, f"column {col} outside line {line} ({width} characters): {msg!r}"


def parse_or_refuse(text: str, file: str):
    """The parsed grammar, or None after checking the refusal's contract."""
    try:
        return parse_grammar(text, file=file)
    except Exception as e:  # noqa: BLE001 - anything but a located GrammarError fails the test
        assert_grammar_error(e, file, text)
        return None


# well-formed pieces of rules: a soup of them makes grammars that validate (a trunk, a
# branch with one tap, every rule defined and used) as well as ones that do not
SOUP_PIECES = {
    "trunk": ["fc(h=16|32)", "fc(h=8, act=relu|gelu)", "dropout(p=0.1|0.3)", "layer", "layer{1,3}", "layer?"],
    "branch": ["fc(h=4)", "head", "head?", "identity()", "dropout(p=0.2)"],
    "layer": ["fc(h=8|16)", "dropout(p=0.1)", "identity()", "fc(h=4) [2] | identity() [1]"],
    "head": ["fc(h=8)", "dropout(p=0.0|0.1)", "fc(h=16, act=gelu)"],
}
SOUP_TAPS = ["tap(at=last)", "tap(at=1|last)", "tap(at=1)", "tap(at=2|3)"]


@st.composite
def rule_soup(draw):
    """A trunk and a branch (with its tap somewhere in it) made of SOUP_PIECES, the
    helper rules `layer` / `head` defined or not (used or not), the rules in any order;
    then up to two tokens deleted, or replaced by or preceded by a word of GRAMMAR_WORDS."""
    rules = {"trunk": draw(st.lists(st.sampled_from(SOUP_PIECES["trunk"]), min_size=1, max_size=3)),
             "branch": draw(st.lists(st.sampled_from(SOUP_PIECES["branch"]), max_size=2))}
    rules["branch"].insert(draw(st.integers(0, len(rules["branch"]))), draw(st.sampled_from(SOUP_TAPS)))
    text = " ".join(" ".join(v) for v in rules.values())
    for name in ("layer", "head"):
        if (name in text) != (draw(st.integers(0, 5)) == 0):  # mostly: defined when used
            rules[name] = draw(st.lists(st.sampled_from(SOUP_PIECES[name]), min_size=1, max_size=2))
    lines = draw(st.permutations([f"{n} = {' '.join(v)}" for n, v in rules.items()]))
    toks = _tokens("\n".join(lines) + "\n")
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        i = draw(st.integers(0, len(toks) - 1))
        w = draw(st.sampled_from(GRAMMAR_WORDS))
        kind = draw(st.sampled_from(["del", "rep", "ins"]))
        toks[i : i + 1] = {"del": [], "rep": [w], "ins": [w, toks[i]]}[kind]
    return "".join(toks)


WORD_SOUP = st.lists(st.sampled_from(GRAMMAR_WORDS), max_size=60).map("".join)
TOKEN_SOUP = st.one_of(WORD_SOUP, rule_soup())


@st.composite
def mutated_grammar(draw):
    text = SPACES[draw(st.sampled_from(sorted(SPACES)))]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["del_char", "ins_char", "rep_char", "del_tok", "ins_tok", "rep_tok", "dup_tok", "swap_lines", "del_line"]))
        if kind.endswith("char"):
            i = draw(st.integers(0, max(0, len(text) - 1)))
            c = draw(st.sampled_from(GRAMMAR_CHARS))
            text = {"del_char": text[:i] + text[i + 1 :], "ins_char": text[:i] + c + text[i:], "rep_char": text[:i] + c + text[i + 1 :]}[kind]
        elif kind.endswith("tok"):
            toks = _tokens(text)
            if not toks:
                continue
            i = draw(st.integers(0, len(toks) - 1))
            w = draw(st.sampled_from(GRAMMAR_WORDS))
            if kind == "del_tok":
                toks[i : i + 1] = []
            elif kind == "ins_tok":
                toks.insert(i, w)
            elif kind == "rep_tok":
                toks[i] = w
            else:
                toks.insert(i, toks[i])
            text = "".join(toks)
        else:
            lines = text.split("\n")
            if len(lines) < 2:
                continue
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "swap_lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                del lines[i]
            text = "\n".join(lines)
    return text


def _derive_and_build(g, seed: int, n: int = 3):
    """Derive n random architectures and build each on the meta device, with a forward
    pass; every derivation must replay to the same spec."""
    image = g.uses_image_ops()
    shape = (1, 28, 28) if image else (12,)
    cols = () if image else (0, 0, 4, 6)  # two numeric columns and two one-hot blocks (embeddings read them)
    tasks = ("left", "right")
    n_out = {"left": 10, "right": 1}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        spec = derive(g, trial, tasks, shape, n_out, cols)
        assert replay(g, dict(spec.genome), tasks, shape, n_out, cols) == spec
        with torch.device("meta"):
            model = build(spec).eval()  # eval: an ensemble's members are averaged (training keeps k rows each)
            out = model(torch.zeros(2, *shape))
        assert {k: tuple(v.shape) for k, v in out.items()} == {"left": (2, 10), "right": (2, 1)}
        study.tell(trial, 0.0)


# ----------------------------------------------------------------------------- grammars


@FAST
@given(st.text(max_size=300))
def test_random_unicode_into_parse_grammar(text):
    g = parse_or_refuse(text, "<random>")
    if g is not None:
        _derive_and_build(g, seed=0, n=1)


@FAST
@given(TOKEN_SOUP)
def test_grammar_token_soup_into_parse_grammar(text):
    g = parse_or_refuse(text, "<soup>")
    if g is not None:
        _derive_and_build(g, seed=0, n=2)


def _outcomes(strategy, file: str, **kw) -> tuple[int, int]:
    """(accepted, refused) over 80 texts drawn from `strategy` (refusals checked by
    `parse_or_refuse`: one line naming the file, line and column)."""
    counts = {"ok": 0, "bad": 0}

    @settings(deadline=None, max_examples=80, database=None, **kw)
    @given(strategy)
    def probe(text):
        counts["bad" if parse_or_refuse(text, file) is None else "ok"] += 1

    probe()
    return counts["ok"], counts["bad"]


def test_token_soups_reach_both_outcomes():
    """The soup is not vacuous: some soups validate (and then derive and build, as above),
    some are refused; a refused one's message points into the soup."""
    ok, bad = _outcomes(rule_soup(), "<soup>", derandomize=True)
    assert ok >= 10 and bad >= 10, (ok, bad)
    # and one soup spelled out: it parses and derives
    g = parse_grammar("trunk = fc(h=16|32) layer{1,3}\nlayer = dropout(p=0.1|0.3)\nbranch = tap(at=last) head?\n"
                      "head = fc(h=8, act=relu|gelu)\n", file="<soup>")
    _derive_and_build(g, seed=0, n=2)


@BUILD
@given(mutated_grammar(), st.integers(0, 2**16))
def test_mutated_shipped_grammars_fail_cleanly_or_build(text, seed):
    g = parse_or_refuse(text, "<mutant>")
    if g is not None:
        _derive_and_build(g, seed)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_shipped_grammars_derive_and_build(name):
    g = parse_grammar(SPACES[name], file=f"{name}.grammar")
    _derive_and_build(g, seed=1, n=8)


def test_mutations_reach_both_outcomes():
    """The mutation strategy is not vacuous: some mutants validate, some are refused."""
    ok, bad = _outcomes(mutated_grammar(), "<mutant>")
    assert ok > 0 and bad > 0


# ----------------------------------------------------------------------------- task suites


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5000), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["csv", "npz", "parquet", "multimnist", "multifashion", "binary", "multiclass", "regression",
                     "accuracy", "auc", "mae", "rmse", "data.csv", "left", "y", "label"]),
)
KEYS = st.sampled_from(["name", "data", "tasks", "description", "source", "path", "features", "categorical", "kind",
                        "target", "metric", "weight", "positive", "n_train", "n_val", "val_fraction", "split_seed", "bogus"])
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=20)


def assert_suite_error(e: Exception, file: str) -> None:
    """`e` is a one-line SuiteError starting with the suite's file (then line:col or the field)."""
    assert isinstance(e, SuiteError), f"{type(e).__name__} escaped: {e!r}"
    msg = str(e)
    assert len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, f"not one line: {msg!r}"
    assert msg.startswith(file + ":"), msg


@FAST
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_random_dicts_into_suite_from_dict(raw):
    try:
        suite_from_dict(raw, base_dir=ROOT / "tests" / "bad_inputs", file="<random>")
    except Exception as e:  # noqa: BLE001
        assert_suite_error(e, "<random>")


@st.composite
def tomlish(draw):
    if draw(st.booleans()):
        return draw(st.text(alphabet=st.sampled_from('[]="\n ,.#abcdeknstx01_' + "'"), max_size=200))
    text = SUITES[draw(st.sampled_from(sorted(SUITES)))]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(0, len(text) - 1)))
        c = draw(st.sampled_from(list('[]="\n ,.#0123456789-') + ["source", "kind", "tasks", "true", "nan", "[[tasks]]\n"]))
        op = draw(st.sampled_from(["del", "ins", "rep"]))
        text = {"del": text[:i] + text[i + 1 :], "ins": text[:i] + c + text[i:], "rep": text[:i] + c + text[i + 1 :]}[op]
    return text


@FAST
@given(tomlish())
def test_tomlish_text_into_load_suite(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "suite.toml"
        p.write_text(text, encoding="utf-8")
        try:
            load_suite(p)
        except Exception as e:  # noqa: BLE001
            assert_suite_error(e, str(p))


@FAST
@given(st.binary(max_size=200))
def test_random_bytes_into_load_suite(data):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "suite.toml"
        p.write_bytes(data)
        try:
            load_suite(p)
        except Exception as e:  # noqa: BLE001
            assert_suite_error(e, str(p))


COLS = st.sampled_from(["a", "b", "c", "label", "y", "zz"])
CSV_DATA = st.fixed_dictionaries(
    {"source": st.just("csv"), "path": st.just("data.csv")},
    optional={"features": st.lists(COLS, max_size=4), "categorical": st.lists(COLS, max_size=3),
              "val_fraction": st.floats(0.01, 0.99), "test_fraction": st.floats(0.01, 0.99),
              "n_train": st.integers(1, 100), "n_val": st.integers(1, 5)},
)
CSV_TASKS = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["t1", "t2", "t3"]), "kind": st.sampled_from(["binary", "multiclass", "regression"]), "target": COLS},
        optional={"positive": st.one_of(st.sampled_from(["yes", "no", "x"]), st.integers(0, 9), st.floats(0, 1))},
    ),
    min_size=1, max_size=3,
)


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(CSV_DATA, CSV_TASKS)
def test_random_csv_suites_load_or_fail_cleanly(data, tasks):
    """Columns that exist or not, labels that occur or not, splits too small: the data
    loader says so with a SuiteError naming the field, or returns arrays that fit."""
    import warnings

    from nasmt.data import load_data

    try:
        suite = suite_from_dict({"name": "r", "data": data, "tasks": tasks}, base_dir=ROOT / "tests" / "bad_inputs", file="<r>")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = load_data(suite)
    except Exception as e:  # noqa: BLE001
        assert_suite_error(e, "<r>")
        return
    for split in ("train", "val"):
        assert d.x[split].shape[0] == len(next(iter(d.y[split].values())))
