"""``maskrcnn data``: generate datasets. ``maskrcnn data shapes`` writes synthetic squares, circles and triangles."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data",
        help="generate datasets (synthetic shapes)",
        description="Generate datasets in COCO format (DIR/annotations.json and DIR/images/).",
    )
    datasets = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    shapes = datasets.add_parser(
        "shapes",
        help="random squares, circles and triangles on random backgrounds",
        description="Write a synthetic instance-segmentation dataset: squares, circles and triangles of 1/8 to 1/2 "
        "the image side on gradient-and-noise backgrounds, up to --max-instances per image, overlapping (masks are "
        "the visible parts); about 5% of images have no objects. The same arguments give byte-identical files.",
    )
    shapes.add_argument("--num-images", type=int, required=True, metavar="N", help="number of images")
    shapes.add_argument("--output", type=Path, required=True, metavar="DIR", help="output folder")
    shapes.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    shapes.add_argument("--image-size", type=int, default=128, metavar="PX", help="image side in pixels (default: 128)")
    shapes.add_argument("--max-instances", type=int, default=4, metavar="N", help="most shapes per image (default: 4)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from maskrcnn.data.shapes import generate_shapes

    json_path = generate_shapes(
        args.output,
        num_images=args.num_images,
        seed=args.seed,
        image_size=args.image_size,
        max_instances=args.max_instances,
    )
    print(f"wrote {json_path} and {args.num_images} images in {args.output / 'images'}")
    return 0
