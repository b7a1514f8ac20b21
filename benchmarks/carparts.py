"""Car-Parts from scratch: train Mask R-CNN on ../shared/data/car-parts/train and report box and mask AP.

The official Car-Parts training set (400 images, 512 x 512, 18 part classes) is split deterministically: the json's
last 50 images are held out for validation, the first 350 train. No pretrained weights are used anywhere.

Recipes (``--recipe``):
  gpu        ResNet-50-FPN, trainable BatchNorm, short side jittered 384-640 (test 512), batch 8, 9000 iterations,
             SGD lr 0.02 cosine with 500 warm-up iterations, bf16 AMP. For a GPU; not yet run (the task that wrote
             this had no GPU), so docs/benchmarks.md has no figures for it.
  cpu-short  the `small` preset (ResNet-18 at half width, 64-channel FPN, light heads) at 256 px, batch 4,
             1500 iterations at lr 0.02: a shortened run for a 2-core CPU. Its AP shows that the pipeline learns
             real data from scratch; it is not a measure of what the architecture reaches.

    python benchmarks/carparts.py --recipe cpu-short --output runs/carparts-cpu
    python benchmarks/carparts.py --recipe gpu --device cuda --output runs/carparts-gpu
    python benchmarks/carparts.py --recipe cpu-short --output runs/cp-tv model.input.resize=torchvision

Training and inference resize images by the config's rule (``model.input.resize``, structures/resize.py). The
trained model is then evaluated with each inference resize rule in turn (``--eval-resize``; by default the training
rule, then the other): the same weights, so the difference is the inference resize alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from maskrcnn.structures.resize import RULES as RESIZE_RULES

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "car-parts" / "train"
HOLD_OUT = 50

RECIPES = {
    "gpu": (
        "r50_fpn",
        [
            "model.backbone.norm=bn",
            "model.backbone.freeze_at=0",
            "model.input.min_size_train=[384, 416, 448, 480, 512, 544, 576, 608, 640]",
            "model.input.max_size_train=1066",
            "model.input.min_size_test=512",
            "model.input.max_size_test=853",
            "solver.batch_size=8",
            "solver.max_iter=9000",
            "solver.base_lr=0.02",
            "solver.schedule=cosine",
            "solver.warmup_iters=500",
            "solver.amp=bf16",
            "solver.num_workers=8",
            "solver.eval_period=1500",
            "solver.checkpoint_period=1500",
        ],
    ),
    "cpu-short": (
        "small",
        [
            "model.rpn.anchor_sizes=[32, 64, 128, 256, 512]",
            "model.input.min_size_train=[224, 256, 288]",
            "model.input.max_size_train=384",
            "model.input.min_size_test=256",
            "model.input.max_size_test=384",
            "solver.batch_size=4",
            "solver.max_iter=1500",
            "solver.base_lr=0.02",
            "solver.warmup_iters=100",
            "solver.num_workers=1",
            "solver.checkpoint_period=200",
        ],
    ),
}


def split(data_dir: Path, output: Path) -> tuple[Path, Path]:
    """Write train.json (first 350 images) and val.json (last 50) next to nothing but themselves."""
    data = json.loads((data_dir / "annotations.json").read_text())
    images = data["images"]
    held_out = {im["id"] for im in images[-HOLD_OUT:]}
    paths = []
    for name, keep in (("train", lambda i: i not in held_out), ("val", lambda i: i in held_out)):
        subset = {
            "images": [im for im in images if keep(im["id"])],
            "annotations": [a for a in data["annotations"] if keep(a["image_id"])],
            "categories": data["categories"],
        }
        path = output / f"{name}.json"
        path.write_text(json.dumps(subset))
        paths.append(path)
    return paths[0], paths[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="cpu-short")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="car-parts/train folder")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-resize", nargs="+", choices=RESIZE_RULES, default=None,
                        help="inference resize rules to evaluate the trained model with (default: its own, then the other)")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_args()

    from maskrcnn.config import load_config
    from maskrcnn.engine.train import TrainJob, train
    from maskrcnn.evaluation.coco_eval import evaluate_coco, format_summary
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.evaluation.inference import predict_coco_results

    args.output.mkdir(parents=True, exist_ok=True)
    train_json, val_json = split(args.data, args.output)
    images = args.data / "JPEGImages"
    preset, overrides = RECIPES[args.recipe]
    config = load_config(preset, overrides + args.overrides)
    run_dir = args.output / "run"
    started = time.perf_counter()
    train(TrainJob(config=config, train_json=train_json, images_dir=images, output_dir=run_dir,
                   resume=(run_dir / "last.pt").is_file(), device=args.device))
    train_seconds = time.perf_counter() - started

    trained_rule = config.model.input.resize
    rules = args.eval_resize or [trained_rule, *(r for r in RESIZE_RULES if r != trained_rule)]
    by_rule = {}
    for rule in rules:
        predictor = predictor_with_resize(run_dir / "last.pt", rule, device=args.device)
        results = predict_coco_results(predictor, CocoDataset(val_json, images), batch_size=4)
        evaluation = evaluate_coco(val_json, results)
        print(f"\ninference resize {rule!r} (trained with {trained_rule!r}):")
        print(format_summary(evaluation))
        by_rule[rule] = evaluation.metrics
    record = {
        "recipe": args.recipe,
        "command": " ".join(sys.argv),
        "iterations": config.solver.max_iter,
        "train_seconds": round(train_seconds),
        "train_resize": trained_rule,
        "metrics": by_rule[rules[0]],
        "metrics_by_inference_resize": by_rule,
    }
    (args.output / "carparts_result.json").write_text(json.dumps(record, indent=2))
    print()
    for rule, metrics in by_rule.items():
        segm, bbox = metrics["segm"], metrics["bbox"]
        print(f"car-parts {args.recipe}, trained with resize {trained_rule!r}, inference {rule!r}: box AP "
              f"{bbox['AP']:.1f} AP50 {bbox['AP50']:.1f} | mask AP {segm['AP']:.1f} AP50 {segm['AP50']:.1f} | "
              f"{config.solver.max_iter} iterations in {train_seconds / 60:.1f} min")
    return 0


def predictor_with_resize(checkpoint: Path, rule: str, *, device: str):
    """The checkpoint's model with inference resize ``rule`` instead of the one it was trained with."""
    import dataclasses

    from maskrcnn.checkpoint import load_checkpoint, load_state_into
    from maskrcnn.config import replace_model
    from maskrcnn.model.build import build_model
    from maskrcnn.predict import Predictor, resolve_device

    loaded = load_checkpoint(checkpoint)
    config = replace_model(loaded.config, input=dataclasses.replace(loaded.config.model.input, resize=rule))
    model = build_model(config.model)
    load_state_into(model, loaded.state_dict, path=checkpoint)
    return Predictor(model, config=config, class_names=loaded.class_names, category_ids=loaded.category_ids,
                     device=resolve_device(device))

if __name__ == "__main__":
    sys.exit(main())
