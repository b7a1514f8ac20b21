"""``maskrcnn demo``: train, evaluate and predict on generated shapes, on the CPU, in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole workflow on built-in synthetic shapes (what `make demo` runs)",
        description="Generate a synthetic shapes dataset, train the `small` Mask R-CNN preset on it, evaluate it "
        "(COCO box and mask AP), and write a report and overlays. Re-running resumes an interrupted run.",
    )
    p.add_argument("--output", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--iterations", type=int, help="training iterations (default: the small preset's)")
    p.add_argument("--train-images", type=int, default=500, help="synthetic training images (default 500)")
    p.add_argument("--val-images", type=int, default=100, help="synthetic validation images (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the training run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from maskrcnn.demo import run_demo
    from maskrcnn.engine.train import TrainingInterrupted
    from maskrcnn.errors import UserError

    for name in ("iterations", "train_images", "val_images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    try:
        run_demo(
            args.output,
            device=args.device,
            train_images=args.train_images,
            val_images=args.val_images,
            iterations=args.iterations,
            seed=args.seed,
        )
    except TrainingInterrupted as e:
        print(f"interrupted: {e} (run the demo again to continue)", file=sys.stderr)
        return 128 + e.signum
    return 0
