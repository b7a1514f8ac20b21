"""``maskrcnn openimages download``: a COCO dataset of a few Open Images classes, fetching only the bytes needed.

Exit status: 0 for a complete dataset, 1 for a partial one (files that failed after retries; run again to fetch
them), 2 for a user error (bad class name, unreachable annotation server, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskrcnn.data.openimages.layout import DEFAULT_ANNOTATIONS_URL, DEFAULT_IMAGES_URL, SPLITS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "openimages",
        help="download Open Images subsets by class, with instance masks, as COCO",
        description="Open Images V5+ instance segmentation (350 classes with masks).",
    )
    commands = p.add_subparsers(dest="openimages_command", metavar="COMMAND", required=True)
    d = commands.add_parser(
        "download",
        help="fetch N images of some classes with their boxes, masks and verified labels into a COCO dataset",
        description="Fetch images of the given classes with every box of those classes (with its mask when it has "
        "one; group-of boxes as crowd regions) and their verified labels into DIR/annotations.json (COCO, RLE "
        "masks) and DIR/images/. Only the needed bytes are fetched: masks are read out of the remote shard zips "
        "with HTTP Range requests, the box CSV is streamed and cut down to the chosen images. Annotation files "
        "are cached in DIR/.openimages; running the same command again resumes and fetches nothing that is already "
        "there. Exit status 1 means some files failed after retries (the dataset is partial: run again).",
        epilog='example: maskrcnn openimages download --classes "Cat,Traffic light" --split validation '
        "--max-images-per-class 50 --output oi-cats",
    )
    d.add_argument(
        "--classes", required=True, help='comma-separated DisplayNames (any case) or MIDs, e.g. "Cat,Traffic light"'
    )
    d.add_argument("--split", required=True, choices=SPLITS, help="Open Images split")
    d.add_argument("--max-images-per-class", type=int, metavar="N", help="images chosen per class (default: all)")
    d.add_argument("--seed", type=int, default=0, help="which images are chosen, deterministically (default 0)")
    d.add_argument(
        "--negatives",
        type=int,
        default=0,
        metavar="N",
        help="also N images verified to contain none of the classes, chosen the same seeded way (default 0)",
    )
    d.add_argument("--workers", type=int, default=16, help="parallel downloads (default 16)")
    d.add_argument("--output", required=True, type=Path, metavar="DIR", help="output folder (also the cache)")
    d.add_argument(
        "--annotations-url",
        default=DEFAULT_ANNOTATIONS_URL,
        metavar="URL",
        help=f"root holding v5/ (CSV files, {{split}}-masks/*.zip); default {DEFAULT_ANNOTATIONS_URL}",
    )
    d.add_argument(
        "--images-url",
        default=DEFAULT_IMAGES_URL,
        metavar="URL",
        help=f"root holding {{split}}/<ImageID>.jpg; default {DEFAULT_IMAGES_URL}",
    )
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from maskrcnn.data.openimages.download import download_openimages

    report = download_openimages(
        classes=[c.strip() for c in args.classes.split(",") if c.strip()],
        split=args.split,
        output_dir=args.output,
        max_images_per_class=args.max_images_per_class,
        seed=args.seed,
        negatives=args.negatives,
        workers=args.workers,
        annotations_url=args.annotations_url,
        images_url=args.images_url,
        progress=sys.stderr.isatty(),
    )
    print(report.summary())
    return 0 if report.complete else 1
