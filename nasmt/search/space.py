"""The define-by-run hook: Optuna's trial walks the grammar (module level, so Ray and
`functools.partial` can ship it). Parsed grammars are cached per worker process."""

from __future__ import annotations

from nasmt.space.derive import derive
from nasmt.space.grammar import parse_grammar
from nasmt.space.nodes import Grammar

_GRAMMARS: dict[tuple[str, str], Grammar] = {}


def grammar_of(text: str, file: str) -> Grammar:
    """The parsed grammar (once per process: trials of a search share one)."""
    key = (text, file)
    if key not in _GRAMMARS:
        _GRAMMARS[key] = parse_grammar(text, file=file)
    return _GRAMMARS[key]


def define_space(trial, grammar_text: str, grammar_file: str, tasks: tuple, input_shape: tuple, n_outputs: dict,
                 columns: tuple = ()):
    """Derive one architecture with `trial` making every decision (the genome)."""
    derive(grammar_of(grammar_text, grammar_file), trial, tasks, input_shape, n_outputs, columns)
