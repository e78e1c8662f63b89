"""Every command says what it does and every option what it means (issue #22, item 11)."""

from __future__ import annotations

import argparse

import pytest

from tilesam.cli import build_parser
from tilesam.evaluate.evaluation_result import EvaluationResult, ObjectResult


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_and_option_has_a_help_text(name):
    command = _commands()[name]
    assert command.description or command.format_help().count("\n") > 3
    silent = [
        a.option_strings or a.dest
        for a in command._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert not silent, f"tilesam {name}: options without help: {silent}"


def test_train_help_states_the_defaults():
    text = _commands()["train"].format_help().split("options:")[1]
    for option, default in (("--lr", "0.001"), ("--crop", "256"), ("--epochs", "10")):
        block = text[text.index(f"  {option} ") :].split("\n  --")[0]
        assert f"(default: {default})" in " ".join(block.split()), option


def test_one_click_has_no_clicks_to_reach_a_level():
    objects = [
        ObjectResult(image="a", object_id=i, area=50, point_iou=0.8, box_iou=0.9,
                     click_ious=[iou], clicks=[(1.0, 1.0, 1)])
        for i, iou in enumerate((0.95, 0.5))
    ]  # fmt: skip
    result = EvaluationResult(objects=objects, n_clicks=1)
    assert result.summary["noc85"] is None and result.summary["noc90"] is None
    assert "NoC@85" in result.table() and "1.00" not in result.table().split("NoC@85")[1]
