"""Every option of every `nasmt` subcommand says, in `--help`, what it does and, when it
has one, its default through argparse's %(default)s (so the text cannot drift from the
value). Walks the real parser the CLI runs."""

from __future__ import annotations

import argparse

from nasmt.cli import build_parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _has_default(action: argparse.Action) -> bool:
    """A default worth stating: not None / False / an empty list (nothing happens unless given)."""
    d = action.default
    return not (d is None or d is False or (isinstance(d, (list, tuple)) and not d))


def _rendered(action: argparse.Action, prog: str) -> str:
    """The help text as --help prints it (%(default)s and friends filled in)."""
    return action.help % {**vars(action), "prog": prog} if "%" in action.help else action.help


def test_every_option_has_help_naming_its_default():
    commands = _subcommands(build_parser())
    assert {"validate", "sample", "search", "quickstart", "baselines", "affinity", "finalize", "report", "dashboard",
            "export", "predict"} <= set(commands)
    bad, checked = [], 0
    for name, sp in commands.items():
        sp.format_help()  # every help string formats (a bad %-placeholder raises here)
        for act in sp._actions:
            if isinstance(act, argparse._HelpAction) or act.help == argparse.SUPPRESS:
                continue
            flag = f"{name} {'/'.join(act.option_strings) or act.dest}"
            checked += 1
            text = _rendered(act, sp.prog) if act.help else ""
            if not text.strip():
                bad.append(f"{flag}: no help")
            elif _has_default(act) and ("%(default)s" not in act.help or str(act.default) not in text):
                bad.append(f"{flag}: help does not state the default {act.default!r} with %(default)s")
    assert checked > 60
    assert not bad, "\n".join(bad)


def test_baselines_fallbacks_in_help_are_the_training_defaults():
    """`nasmt baselines` without a run falls back to TrainConfig's values; its help names them."""
    from nasmt.train import TrainConfig

    helps = {a.dest: a.help for a in _subcommands(build_parser())["baselines"]._actions}
    for key in ("batch_size", "lr", "seed"):
        assert f"else {getattr(TrainConfig, key)})" in helps[key], (key, helps[key])
    assert "else 1)" in helps["epochs"] and TrainConfig.epochs == 1.0
