"""The ``maskrcnn`` command line: one sub-command per job, each in its own module of this package.

Every sub-command module has ``register(subparsers)``, which adds its parser and sets ``run`` (a function
``args -> int``, the exit status). Modules import torch and the heavy parts of the package inside ``run`` so that
``maskrcnn --help`` stays fast. A ``UserError`` raised anywhere becomes one ``error: ...`` line and exit status 2.
An ``ArgumentError`` names a library argument: the line names the command's flag for it instead, the flag whose
``dest`` is that argument (so a flag's ``dest`` is the name of the library argument it is passed to).
"""

from __future__ import annotations

import argparse
import sys

from maskrcnn import __version__
from maskrcnn.errors import ArgumentError, UserError


def build_parser() -> argparse.ArgumentParser:
    # One import per sub-command, in the order `--help` lists them.
    from maskrcnn.cli import convert, data, demo, evaluate, export, openimages, predict, train, weights

    parser = argparse.ArgumentParser(
        prog="maskrcnn", description="Mask R-CNN instance segmentation: train, evaluate, predict, export, data."
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (demo, train, evaluate, predict, export, weights, convert, data, openimages):
        module.register(subparsers)
    return parser


def _flag(parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str) -> str:
    """The option (``--images``) or metavar of the chosen sub-command's argument stored in ``dest``; ``dest`` itself
    when the command has none."""
    actions = parser._actions  # argparse keeps a parser's arguments here; it has no public accessor
    for action in actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return _flag(action.choices[getattr(args, action.dest)], args, dest)
    for action in actions:
        if action.dest == dest:
            return max(action.option_strings, key=len) if action.option_strings else str(action.metavar or dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ArgumentError as e:
        print(f"error: {e.naming(_flag(parser, args, e.argument))}", file=sys.stderr)
        return 2
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
