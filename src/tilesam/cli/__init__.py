"""The ``tilesam`` command line (also ``python -m tilesam``).

One module per command family (`models`, `embed` and `info`, `segment`, `propagate`,
`train` and `synthesize`, `evaluate`, `qgis`), each a tuple of `Command` records. Building the
parser imports no model code: every command's help line is always there, but its options
are added only for the command that runs, since some of them (``--slice-scale``'s
default, ``--method``'s choices) live in modules that import the session or SciPy. So
``tilesam --help`` starts in a fraction of a second, and ``tilesam segment`` on a complete
cache imports what the same call from Python does, no more.

Examples
--------
>>> parser = build_parser()
>>> args = parser.parse_args(["segment", "cells.tif", "--point", "5,6", "--out", "m.tif"])
>>> args.command, args.point, args.out
('segment', ['5,6'], 'm.tif')
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tilesam.cli import auto, embed, evaluate, models, propagate, qgis, segment, train
from tilesam.cli._options import Command
from tilesam.errors import TileSAMError

#: Every command, in the order ``tilesam --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    *models.COMMANDS,
    *embed.COMMANDS,
    *segment.COMMANDS,
    *propagate.COMMANDS,
    *train.COMMANDS,
    *evaluate.COMMANDS,
    *auto.COMMANDS,
    *qgis.COMMANDS,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error).

    >>> main(["info", "no_such_cache.zarr"])
    2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    try:
        return args.run(args) or 0
    except TileSAMError as err:
        print(f"tilesam: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tilesam: interrupted; finished work was kept.", file=sys.stderr)
        return 130


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``tilesam`` parser: every command with its options, or, given `command`, the
    options of that one only (the others keep their help line)."""
    parser = argparse.ArgumentParser(
        prog="tilesam", description="Promptable segmentation of large scientific images."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for entry in COMMANDS:
        p = sub.add_parser(entry.name, help=entry.help, description=entry.description)
        p.set_defaults(run=entry.run)
        if command in (None, entry.name):
            entry.options(p)
    return parser


def _command_in(argv: list[str]) -> str:
    """The command word of `argv` ("" when there is none, e.g. ``tilesam --help``): the
    first word that is not an option, as ``tilesam`` itself has no options but ``-h``."""
    return next((word for word in argv if not word.startswith("-")), "")
