"""``maskrcnn evaluate``: COCO box and mask AP of a model, or of a results file, against a COCO json; with a report.

Writes into OUTPUT: metrics.json (``{"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl"}, "segm": {...}}`` in
percent, null where there is nothing to score; with ``--metric openimages`` also ``"openimages": {"mAP", "per_class"}``),
predictions.json (with --weights: the model's COCO results), and unless --no-report the pictures and index.html of
``maskrcnn.evaluation.report``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskrcnn.errors import UserError

METRICS = ("coco", "openimages")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="COCO box and mask AP of a model or a results file, with per-class AP and an HTML report",
        description="Score a model (--weights) or an existing COCO results file (--predictions) against a COCO "
        "instances json with pycocotools: box and mask AP, AP50, AP75, APs, APm, APl and per-class AP. Writes "
        "OUTPUT/metrics.json and a report (OUTPUT/index.html).",
    )
    p.add_argument("--data", required=True, type=Path, metavar="GT.json", help="ground truth: a COCO instances json")
    p.add_argument(
        "--images",
        type=Path,
        dest="images_dir",
        metavar="DIR",
        help="folder of the json's images (default: beside the json, or its images/ or JPEGImages/ folder)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="model to run on the json's images: a checkpoint file or a name from "
                        "`maskrcnn weights list` (downloaded once)")
    source.add_argument(
        "--predictions",
        type=Path,
        metavar="RESULTS.json",
        help="COCO results file to score (as written by `maskrcnn predict`); no model is run",
    )
    p.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder for metrics.json and the report")
    p.add_argument("--device", default="cpu", help="with --weights: cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--batch-size", type=int, default=2, help="with --weights: images per forward pass (default 2)")
    p.add_argument(
        "--iou-types",
        default="bbox,segm",
        help="what to score, comma-separated: bbox, segm (default bbox,segm; bbox alone for box-only results)",
    )
    p.add_argument(
        "--metric",
        default="coco",
        help="coco (default), openimages (the Open Images Challenge 2019 instance-segmentation metric: mAP at mask "
        "IoU 0.5 with group-of regions, box-only instances, verified labels and the class hierarchy), or both: "
        "coco,openimages",
    )
    p.add_argument(
        "--hierarchy",
        type=Path,
        metavar="FILE",
        help="openimages: the class hierarchy json (default: .openimages/2018_04/bbox_labels_600_hierarchy.json "
        "beside GT.json, as `maskrcnn openimages download` leaves it, when present)",
    )
    p.add_argument("--no-report", action="store_true", help="write metrics.json only, no pictures")
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="report: least score of the predictions drawn (default 0.5); AP uses every result",
    )
    p.add_argument("--max-images", type=int, default=12, help="report: images drawn beside ground truth (default 12)")
    p.set_defaults(run=run)


def _iou_types(text: str) -> tuple[str, ...]:
    from maskrcnn.evaluation.coco_eval import IOU_TYPES

    chosen = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in chosen if t not in IOU_TYPES]
    if unknown or not chosen:
        raise UserError(f"--iou-types {text!r}: choose from {', '.join(IOU_TYPES)}")
    return chosen


def _metrics(text: str) -> set[str]:
    chosen = {m.strip() for m in text.split(",")} - {""}
    if not chosen or not chosen <= set(METRICS):
        raise UserError(f"--metric {text!r}: choose from {', '.join(METRICS)} (comma-separated for several)")
    return chosen


def _hierarchy(args: argparse.Namespace) -> Path | None:
    """The hierarchy file for the Open Images metric: --hierarchy, else the one a download left beside the json."""
    if args.hierarchy is not None:
        if not args.hierarchy.is_file():
            raise UserError(f"--hierarchy file not found: {args.hierarchy}")
        return args.hierarchy
    from maskrcnn.data.openimages.layout import HIERARCHY, cache_root

    beside = cache_root(args.data.parent) / HIERARCHY
    return beside if beside.is_file() else None


def _predict(args: argparse.Namespace) -> list[dict]:
    """Run the checkpoint on the ground truth's images -> COCO results with the json's image and category ids."""
    from maskrcnn.evaluation.inference import predict_coco_dataset
    from maskrcnn.zoo import resolve_weights

    weights = resolve_weights(args.weights, purpose="predict")
    if not weights.is_file():
        raise UserError(f"weights not found: {weights}")
    return predict_coco_dataset(
        weights, args.data, images_dir=args.images_dir, device=args.device, batch_size=args.batch_size
    )


def run(args: argparse.Namespace) -> int:
    from maskrcnn.data.images import checked_images_dir
    from maskrcnn.evaluation.coco_eval import evaluate_coco, format_summary, load_ground_truth, load_results
    from maskrcnn.io import atomic_write_json, output_folder

    iou_types = _iou_types(args.iou_types)
    metrics_wanted = _metrics(args.metric)
    hierarchy = _hierarchy(args) if "openimages" in metrics_wanted else None
    if args.images_dir is not None:
        checked_images_dir(args.images_dir)
    if args.max_images < 0:
        raise UserError(f"--max-images must be 0 or more, got {args.max_images}")
    gt = load_ground_truth(args.data)  # checked before any model runs
    output_folder(args.output)

    if args.predictions is not None:
        results = load_results(args.predictions)
        source = str(args.predictions)
    else:
        results = _predict(args)
        predictions_path = args.output / "predictions.json"
        atomic_write_json(predictions_path, results)  # kept even if scoring fails below
        print(f"predictions: {predictions_path} ({len(results)} results)")
        source = str(predictions_path)

    result, openimages, metrics = None, None, {}
    if "coco" in metrics_wanted:
        result = evaluate_coco(gt, results, iou_types=iou_types, source=source)
        print(format_summary(result))
        metrics.update(result.metrics)
    if "openimages" in metrics_wanted:
        from maskrcnn.evaluation.openimages_eval import evaluate_openimages, format_openimages_summary

        openimages = evaluate_openimages(gt, results, hierarchy=hierarchy, source=source)
        print(format_openimages_summary(openimages))
        metrics["openimages"] = openimages.to_json()
    metrics_path = args.output / "metrics.json"
    atomic_write_json(metrics_path, metrics, indent=2)
    print(f"metrics: {metrics_path}")
    if not args.no_report:
        from maskrcnn.evaluation.report import write_report

        index = write_report(
            args.output,
            gt=gt,
            results=results,
            eval_result=result,
            images_dir=args.images_dir,
            max_images=args.max_images,
            score_threshold=args.score_threshold,
            openimages=openimages,
        )
        print(f"report: {index}")
    return 0
