"""``maskrcnn convert``: other annotation formats -> a COCO instances dataset (DIR/annotations.json + DIR/images/)."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = ("via", "yolo-seg", "openimages")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert VIA, YOLO-seg or Open Images annotations into COCO json",
        description="Convert annotations into a COCO instances dataset: OUTPUT/annotations.json and OUTPUT/images/. "
        "Bad annotations are reported with file and line and skipped; the rest converts.",
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="input annotation format")
    p.add_argument(
        "input",
        metavar="INPUT",
        type=Path,
        help="via: the VIA json (or its folder); yolo-seg: the dataset folder (images/ and labels/) or its labels "
        "folder; openimages: a folder of downloaded Open Images files, found anywhere under it by name "
        "({split}-annotations-object-segmentation.csv, class-descriptions-boxable.csv, the mask PNGs or the "
        "{split}-masks-{0-f}.zip shards, <ImageID>.jpg)",
    )
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--images", type=Path, dest="images_dir",
                   help="folder holding the images, when not found beside the annotations")
    p.add_argument("--names", type=Path, help="yolo-seg: class names, one per line, or a YOLO data.yaml (default: data.yaml or "
                   "dataset.yaml in the dataset folder, classes.txt beside the labels, else the 80 COCO names)")
    p.add_argument(
        "--classes",
        help='openimages: comma-separated class names (any case) or MIDs to keep, e.g. "Cat,Traffic light" '
        "(default: every class in the CSV)",
    )
    p.add_argument("--split", help="openimages: train, validation or test (default: the only CSV's split)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "via":
        from maskrcnn.data.convert.via import convert_via

        report = convert_via(args.input, args.output, images_dir=args.images_dir)
    elif args.format == "yolo-seg":
        from maskrcnn.data.convert.yolo_seg import convert_yolo_seg

        report = convert_yolo_seg(args.input, args.output, images_dir=args.images_dir, names_file=args.names)
    else:
        from maskrcnn.data.openimages.local import convert_openimages

        classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
        report = convert_openimages(args.input, args.output, classes=classes, split=args.split)
    print(report.summary())
    return 0
