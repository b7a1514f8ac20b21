"""Placeholder for ``maskrcnn evaluate`` while it is being written."""

from maskrcnn.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="COCO box and mask AP (in progress)")
    p.set_defaults(run=run)


def run(args) -> int:
    raise UserError("`maskrcnn evaluate` is not available yet")
