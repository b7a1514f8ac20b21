"""``maskrcnn weights list``: the published weights that ``--weights NAME`` knows, with their COCO AP and size."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "weights",
        help="published weights usable by name (--weights NAME)",
        description="Published Mask R-CNN and backbone weights that --weights NAME downloads once into "
        "$MASKRCNN_HOME/weights (default ~/.cache/maskrcnn/weights) and checks before first use.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="name, architecture, source, published COCO AP, file size, status")
    listing.set_defaults(run=run_list)


def run_list(args: argparse.Namespace) -> int:
    from maskrcnn.zoo import cache_path, registry, weights_home

    header = ("NAME", "ARCHITECTURE", "SOURCE", "BOX AP", "MASK AP", "SIZE", "STATUS")
    rows = []
    for e in registry.ENTRIES:
        path = cache_path(e)
        size_mb = path.stat().st_size / 2**20 if path.is_file() else e.size_mb  # the file's own size once here
        rows.append((
            e.name,
            e.architecture + (" backbone" if e.kind == "backbone" else ""),
            e.source,
            _number(e.box_ap),
            _number(e.mask_ap),
            "unpublished" if size_mb is None else f"{size_mb:.0f} MB",
            _status(e, path.is_file()),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {3, 4, 5}  # numbers
    for row in [header, *rows]:
        print("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print(f"\nAP: COCO val2017 as published. Cache: {weights_home() / 'weights'} (set MASKRCNN_HOME to move it).")
    return 0


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _status(entry, cached: bool) -> str:
    where = "downloaded" if cached else "downloads on first use"
    return where + (", for train only" if entry.kind == "backbone" else "")
