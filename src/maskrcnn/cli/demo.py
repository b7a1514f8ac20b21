"""Placeholder for ``maskrcnn demo`` while it is being written."""

from maskrcnn.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the synthetic-shapes demo (in progress)")
    p.set_defaults(run=run)


def run(args) -> int:
    raise UserError("`maskrcnn demo` is not available yet")
