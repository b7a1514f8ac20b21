"""Placeholder for ``maskrcnn predict`` while it is being written."""

from maskrcnn.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="run a model on images (in progress)")
    p.set_defaults(run=run)


def run(args) -> int:
    raise UserError("`maskrcnn predict` is not available yet")
