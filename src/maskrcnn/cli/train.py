"""``maskrcnn train``: train Mask R-CNN on a COCO instances dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on a COCO instances dataset",
        description="Train Mask R-CNN. RUN_DIR receives config.yaml, metrics.jsonl, last.pt (resumable), best.pt "
        "(best validation AP) and loss_curve.png. Ctrl-C or SIGTERM finishes the current iteration, saves last.pt "
        "and exits (130 / 143); --resume continues from there. Exit status 1: the final evaluation failed (the "
        "weights are saved). Several processes: torchrun --nproc-per-node N -m maskrcnn train ...",
    )
    p.add_argument("--config", help="preset (r50_fpn, r101_fpn, small) or a YAML file (default: small; with --resume, "
                   "the run's saved config)")
    p.add_argument("--data", required=True, type=Path, help="training COCO instances json")
    p.add_argument("--val", type=Path, help="validation COCO instances json, evaluated during and after training")
    p.add_argument("--images", type=Path, dest="images_dir",
                   help="folder of the training images (default: found beside the json)")
    p.add_argument("--val-images", type=Path, dest="val_images_dir",
                   help="folder of the validation images (default: found beside the json)")
    p.add_argument("--output", required=True, type=Path, help="run folder")
    p.add_argument("--weights", help="start from: a maskrcnn checkpoint, a torchvision Mask R-CNN (class layers "
                   "resized to the new classes), an ImageNet ResNet file (backbone only), or a name from "
                   "`maskrcnn weights list` (downloaded once)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.pt exactly where it stopped")
    again.add_argument("--overwrite", action="store_true", help="start over in a RUN_DIR that holds a run, deleting "
                       "its last.pt, best.pt, config.yaml, metrics.jsonl and loss_curve.png")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. solver.max_iter=2000")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from maskrcnn.config import given_keys, load_config
    from maskrcnn.engine.train import RunExists, TrainingInterrupted, TrainJob, resume_checkpoint, train
    from maskrcnn.errors import ArgumentError, UserError
    from maskrcnn.zoo import resolve_weights

    if args.resume and args.weights:
        raise UserError("--resume continues RUN_DIR/last.pt; it cannot be combined with --weights")
    if args.resume and args.config is None:
        from maskrcnn.checkpoint import load_checkpoint
        from maskrcnn.config import from_dict, parse_overrides

        config = from_dict(parse_overrides(args.overrides), load_checkpoint(resume_checkpoint(args.output)).config)
        keys = given_keys("small", args.overrides)
    else:
        config = load_config(args.config or "small", args.overrides)
        keys = given_keys(args.config or "small", args.overrides)
    try:
        summary = train(
            TrainJob(
                config=config,
                train_json=args.data,
                val_json=args.val,
                images_dir=args.images_dir,
                val_images_dir=args.val_images_dir,
                output_dir=args.output,
                init_weights=resolve_weights(args.weights, purpose="train") if args.weights else None,
                resume=args.resume,
                overwrite=args.overwrite,
                device=args.device,
                given_keys=keys,
            )
        )
    except RunExists as e:
        raise UserError(f"{e}: continue it with --resume, or start over with --overwrite (deletes those files)") from None
    except ArgumentError as e:
        if e.argument == "config" and args.resume:
            raise UserError(f"{e.naming('--config')}; leave out --config to continue with the saved one") from None
        raise
    except TrainingInterrupted as e:
        print(f"interrupted: {e} (continue with --resume)", file=sys.stderr)
        return 128 + e.signum
    if not summary["is_main"]:
        return 0
    if summary.get("eval"):
        metrics = summary["eval"]
        print("  ".join(f"{t}: AP {m['AP']:.1f} AP50 {m['AP50']:.1f}" for t, m in metrics.items()))
    if summary["skipped_images"]:
        print(f"warning: {summary['skipped_images']} time(s) an image failed to decode and was left out of its batch "
              f"(named above; counted in {args.output}/metrics.jsonl)", file=sys.stderr)  # fmt: skip
    print(f"trained to iteration {summary['iteration']}; weights: {args.output}/last.pt")
    if summary["eval_error"]:
        print(f"error: {summary['eval_error']}", file=sys.stderr)
        return 1
    return 0
