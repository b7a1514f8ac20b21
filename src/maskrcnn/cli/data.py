"""Placeholder for ``maskrcnn data`` while it is being written."""

from maskrcnn.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="generate datasets (in progress)")
    p.set_defaults(run=run)


def run(args) -> int:
    raise UserError("`maskrcnn data` is not available yet")
