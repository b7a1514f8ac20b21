"""The demo: the whole workflow on built-in synthetic data, on the CPU, in minutes.

DIR/data/{train,val}   generated shapes datasets (COCO json + PNG images)
DIR/run/               the training run (config.yaml, metrics.jsonl, last.pt, loss_curve.png)
DIR/metrics.json       COCO box and mask AP on the validation set, in percent
DIR/report/index.html  per-class AP, precision-recall curves, predictions next to ground truth
DIR/overlays/          a few validation images with their predicted masks

Running it again resumes an interrupted training run rather than starting over.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from maskrcnn.config import Config, preset

NUM_OVERLAYS = 8


def demo_config(*, iterations: int | None = None, seed: int = 0) -> Config:
    config = preset("small")
    solver = dataclasses.replace(
        config.solver, seed=seed, **({"max_iter": iterations} if iterations is not None else {})
    )
    return dataclasses.replace(config, solver=solver)


def run_demo(
    output: Path,
    *,
    device: str = "cpu",
    train_images: int = 500,
    val_images: int = 100,
    iterations: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Generate data, train the ``small`` preset, evaluate, write the report and overlays. Returns a summary."""
    from maskrcnn.data.shapes import generate_shapes
    from maskrcnn.engine.train import TrainJob, train
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.evaluation.coco_eval import evaluate_coco, format_summary, load_ground_truth
    from maskrcnn.evaluation.inference import predict_coco_results
    from maskrcnn.evaluation.report import write_report
    from maskrcnn.io import atomic_write_json
    from maskrcnn.predict import Predictor

    started = time.perf_counter()
    config = demo_config(iterations=iterations, seed=seed)
    _say(f"1/4 generating {train_images} training and {val_images} validation images of shapes")
    train_json = generate_shapes(output / "data" / "train", num_images=train_images, seed=seed)
    val_json = generate_shapes(output / "data" / "val", num_images=val_images, seed=seed + 10_000)

    run_dir = output / "run"
    resume = (run_dir / "last.pt").is_file()
    _say(f"2/4 training the small Mask R-CNN for {config.solver.max_iter} iterations on {device}"
         + (" (resuming the earlier run)" if resume else ""))
    t_train = time.perf_counter()
    # The demo owns its run folder: a run killed before its first checkpoint is started over.
    train(TrainJob(config=config, train_json=train_json, output_dir=run_dir, resume=resume, overwrite=not resume,
                   device=device))  # fmt: skip
    train_seconds = time.perf_counter() - t_train

    _say("3/4 evaluating on the validation set")
    predictor = Predictor.from_file(run_dir / "last.pt", device=device)
    results = predict_coco_results(predictor, CocoDataset(val_json), batch_size=4, progress=False)
    gt = load_ground_truth(val_json)
    evaluation = evaluate_coco(gt, results)
    atomic_write_json(output / "metrics.json", evaluation.metrics, indent=2)
    atomic_write_json(output / "predictions.json", results)
    report = write_report(output / "report", gt=gt, results=results, eval_result=evaluation,
                          images_dir=val_json.parent)

    _say(f"4/4 drawing {NUM_OVERLAYS} overlays")
    _write_overlays(predictor, sorted((val_json.parent / "images").glob("*.png"))[:NUM_OVERLAYS], output / "overlays")

    total = time.perf_counter() - started
    summary = {
        "seconds": round(total, 1),
        "train_seconds": round(train_seconds, 1),
        "iterations": config.solver.max_iter,
        "metrics": evaluation.metrics,
        "report": str(report),
    }
    atomic_write_json(output / "summary.json", summary, indent=2)
    print(format_summary(evaluation))
    segm, bbox = evaluation.metrics["segm"], evaluation.metrics["bbox"]
    print(f"\ndemo finished in {_minutes(total)} (training {_minutes(train_seconds)}): "
          f"mask AP {segm['AP']:.1f}, mask AP50 {segm['AP50']:.1f}, box AP {bbox['AP']:.1f} "
          f"on {val_images} validation images")
    print(f"  metrics:  {output / 'metrics.json'}")
    print(f"  report:   {report}")
    print(f"  overlays: {output / 'overlays'}/")
    print(f"  weights:  {run_dir / 'last.pt'}  (try: maskrcnn predict --weights {run_dir / 'last.pt'} "
          f"--output out IMAGE...)")
    return summary


def _write_overlays(predictor, paths: list[Path], folder: Path) -> None:
    from PIL import Image

    from maskrcnn.data.images import read_image
    from maskrcnn.io import atomic_open
    from maskrcnn.visualize import draw_instances

    folder.mkdir(parents=True, exist_ok=True)
    images = [read_image(p) for p in paths]
    for path, image, pred in zip(paths, images, predictor.predict(images, score_threshold=0.5, batch_size=4)):
        overlay = draw_instances(image, boxes=pred.boxes, masks=pred.masks, labels=pred.class_names,
                                 scores=pred.scores)
        # the shapes are small: show them at 3x
        big = Image.fromarray(overlay).resize((overlay.shape[1] * 3, overlay.shape[0] * 3), Image.NEAREST)
        with atomic_open(folder / f"{path.stem}.png", "wb") as f:
            big.save(f, format="PNG")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
