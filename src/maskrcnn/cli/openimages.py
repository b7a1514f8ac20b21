"""Placeholder for ``maskrcnn openimages`` while it is being written."""

from maskrcnn.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("openimages", help="Open Images subsets (in progress)")
    p.set_defaults(run=run)


def run(args) -> int:
    raise UserError("`maskrcnn openimages` is not available yet")
