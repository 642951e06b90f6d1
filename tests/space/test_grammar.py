"""Grammar language: parsing, validation errors with file:line:col, shipped spaces."""

from pathlib import Path

import pytest

from nasmt.errors import GrammarError
from nasmt.space.grammar import load_grammar, parse_grammar
from nasmt.space.validate import check_compatible

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "search_spaces").glob("*.grammar"))

GOOD = """\
trunk  = stem stage{1,3}      # comment
stem   = conv(k=3, c=8|16, s=2)
stage  = conv(k=3|5, c=16) [3]
       | dwsep(k=3, c=16|32) [1]
branch = tap(at=1|last) extra? head
extra  = conv(k=3, c=8)
head   = gap() fc(h=16|32)
quant  = precision(w=fp32|int8, a=fp32|int8)
"""


def test_shipped_grammars_validate():
    assert len(SHIPPED) >= 2
    names = {p.stem for p in SHIPPED}
    assert {"conv", "mlp"} <= names
    for p in SHIPPED:
        g = load_grammar(p)
        assert "trunk" in g.rules and "branch" in g.rules


def test_parse_structure():
    g = parse_grammar(GOOD, "good.grammar")
    stage = g.rule("stage")
    assert [a.label for a in stage.alts] == ["conv", "dwsep"]
    assert [a.weight for a in stage.alts] == [3.0, 1.0]
    trunk = g.rule("trunk").alts[0]
    assert [(i.key, i.lo, i.hi) for i in trunk.items] == [("stem", 1, 1), ("stage", 1, 3)]
    conv = g.rule("stem").alts[0].items[0].atom
    assert conv.param("c").choices == (8, 16)
    assert g.has_quant


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("trunk = foo\nbranch = tap(at=1)\n", "x.grammar:1:9", "undefined rule 'foo'"),
        ("trunk = conv(k=3, c=8)\nbranch = tap(at=1)\nunused = gap()\n", "x.grammar:3:1", "never used"),
        ("trunk = a\na = b\nb = a\nbranch = tap(at=1)\n", "x.grammar:3:5", "recursive"),
        ("trunk = conv(k=3, c=)\nbranch = tap(at=1)\n", "x.grammar:1:21", "syntax error"),
        ("trunk = convv(k=3)\nbranch = tap(at=1)\n", "x.grammar:1:9", "unknown op 'convv'"),
        ("trunk = conv(k=x, c=8)\nbranch = tap(at=1)\n", "x.grammar:1:14", "must be an integer"),
        ("trunk = conv(k=4, c=8)\nbranch = tap(at=1)\n", "x.grammar:1:14", "odd"),
        ("trunk = conv(k=3, c=8){3,1}\nbranch = tap(at=1)\n", "x.grammar:1:24", "lower bound"),
        ("trunk = conv(k=3, c=8)\nbranch = gap()\n", "x.grammar:2:10", "exactly one tap"),
        ("trunk = fc(h=8) conv(k=3, c=8)\nbranch = tap(at=1)\n", "x.grammar:1:17", "image op after a vector op"),
        ("trunk = conv(k=3, c=8)\n", "x.grammar", "missing required rule 'branch'"),
    ],
)
def test_errors_name_file_line_col(text, where, what):
    with pytest.raises(GrammarError) as e:
        parse_grammar(text, "x.grammar")
    msg = str(e.value)
    assert msg.startswith(where), msg
    assert what in msg
    assert "\n" not in msg


def test_conv_space_refused_on_vectors():
    g = load_grammar(ROOT / "search_spaces" / "conv.grammar")
    with pytest.raises(GrammarError, match="needs image input"):
        check_compatible(g, image_input=False, suite_file="people.toml")
    check_compatible(load_grammar(ROOT / "search_spaces" / "mlp.grammar"), image_input=False)


def test_cli_validate(capsys, tmp_path):
    from nasmt.cli import main

    assert main(["validate", *map(str, SHIPPED)]) == 0
    bad = tmp_path / "bad.grammar"
    bad.write_text("trunk = conv(k=3, c=8)\nbranch = tap(at=1) head\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:20: undefined rule 'head'" in err
    assert "Traceback" not in err
