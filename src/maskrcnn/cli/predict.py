"""``maskrcnn predict``: images -> overlays (DIR/<stem>.png) and COCO results (DIR/predictions.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="run a model on images: overlays and COCO results json",
        description="Run a model on image files or folders. Writes DIR/<stem>.png overlays and DIR/predictions.json "
        "(COCO results with RLE masks). Unreadable images, and images of more than --max-pixels pixels, are reported "
        "and skipped; the exit status is then 1.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--weights", required=True, help="a maskrcnn checkpoint, a torchvision maskrcnn_resnet50_fpn file, or a name from `maskrcnn weights list` (downloaded once)")
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="torch, or an exported .onnx "
                   "model run with onnxruntime (then --weights is the .onnx file)")
    p.add_argument("--no-overlays", action="store_true", help="write predictions.json only")
    p.add_argument("--format", choices=("coco", "openimages-csv"), default="coco",
                   help="coco: predictions.json only (default); openimages-csv: also DIR/openimages-submission.csv, "
                   "the Open Images Challenge segmentation submission (ImageID, ImageWidth, ImageHeight, "
                   "PredictionString with encoded masks)")
    p.add_argument("--openimages-classes", type=Path, metavar="FILE", dest="classes_file",
                   help="openimages-csv: the classes' MIDs, from the training annotations.json (categories with "
                   "`mid`) or class-descriptions-boxable.csv (default: the class names are MIDs)")  # fmt: skip
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help="skip images of more pixels than this (default 100000000, i.e. 100 megapixels, such as "
                   "12000 x 8000; an image takes 3 bytes a pixel in memory, and more while it is resized)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from maskrcnn.data.images import DEFAULT_MAX_PIXELS, TooManyPixels, list_images, read_image
    from maskrcnn.errors import UserError
    from maskrcnn.io import atomic_write_json, output_folder

    if not args.inputs:
        raise UserError("no input images given: pass image files or folders after the options")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.score_threshold <= 1.0:
        raise UserError(f"--score-threshold must be between 0 and 1, got {args.score_threshold}")
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    if max_pixels < 1:
        raise UserError(f"--max-pixels must be at least 1, got {max_pixels}")
    paths = list_images(args.inputs)
    if not paths:
        raise UserError(f"no image files found in {', '.join(map(str, args.inputs))}")
    predictor = _load_predictor(args)
    submission = _openimages_submission(args, predictor)  # checked before the output folder is made
    output_folder(args.output)

    from maskrcnn.visualize import draw_instances

    results: list[dict] = []
    failed: list[str] = []
    too_large = 0
    used_names: set[str] = set()
    progress = tqdm(total=len(paths), unit="img", disable=len(paths) < 2, file=sys.stderr)

    def flush(batch: list[tuple[int, Path, object]]) -> None:
        predictions = predictor.predict_arrays([im for _, _, im in batch], score_threshold=args.score_threshold)
        for (image_id, path, image), pred in zip(batch, predictions):
            results.extend(pred.to_coco(image_id=image_id, file_name=str(path)))
            if submission is not None:
                submission.add(path, image, pred)
            if not args.no_overlays:
                overlay = draw_instances(
                    image, boxes=pred.boxes, masks=pred.masks, labels=pred.class_names, scores=pred.scores
                )
                _write_png(args.output / overlay_name(path, used_names), overlay)
        progress.update(len(batch))

    batch: list[tuple[int, Path, object]] = []
    try:
        for image_id, path in enumerate(paths, start=1):
            try:
                batch.append((image_id, path, read_image(path, max_pixels=max_pixels)))
            except UserError as e:
                failed.append(str(path))
                too_large += isinstance(e, TooManyPixels)
                progress.write(f"skipping {e}", file=sys.stderr)
                progress.update(1)
                continue
            if len(batch) == args.batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    finally:
        # Whatever happened, keep the results of the images already done.
        progress.close()
        atomic_write_json(args.output / "predictions.json", results)
        if submission is not None:
            submission.write()

    done = len(paths) - len(failed)
    print(f"{done} image(s), {len(results)} instance(s) -> {args.output}/predictions.json"
          + ("" if args.no_overlays else f" and {done} overlay(s)"))
    if failed:
        large = f"; {too_large} of them over --max-pixels {max_pixels}" if too_large else ""
        print(f"error: {len(failed)} image(s) skipped (reasons above{large}): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


class _OpenImagesSubmission:
    """Rows of the Open Images submission file, one per image predicted, written into the output folder."""

    def __init__(self, path: Path, mids: list[str]):
        self.path, self.mids, self.rows = path, mids, []

    def add(self, path: Path, image, pred) -> None:
        from maskrcnn.data.openimages.submission import submission_row

        detections = [(self.mids[k - 1], float(s), m) for k, s, m in zip(pred.labels, pred.scores, pred.masks)]
        self.rows.append(submission_row(path.stem, width=image.shape[1], height=image.shape[0], detections=detections))

    def write(self) -> None:
        from maskrcnn.data.openimages.submission import write_submission

        write_submission(self.path, self.rows)


def _openimages_submission(args: argparse.Namespace, predictor) -> _OpenImagesSubmission | None:
    if args.format != "openimages-csv":
        return None
    from maskrcnn.data.openimages.submission import class_mids

    mids = class_mids(args.classes_file, class_names=predictor.class_names,
                      category_ids=predictor.category_ids)  # fmt: skip
    return _OpenImagesSubmission(args.output / "openimages-submission.csv", mids)


def _load_predictor(args: argparse.Namespace):
    if args.backend == "onnxruntime":
        from maskrcnn.errors import UserError
        from maskrcnn.export import OnnxPredictor

        if args.device != "cpu":
            raise UserError(f"--backend onnxruntime runs on the CPU only; drop --device {args.device}")
        return OnnxPredictor.from_file(args.weights)
    from maskrcnn.errors import UserError
    from maskrcnn.predict import Predictor
    from maskrcnn.zoo import resolve_weights

    if Path(args.weights).suffix.lower() == ".onnx":
        raise UserError(f"--weights {args.weights} is an ONNX model: run it with --backend onnxruntime")

    return Predictor.from_file(resolve_weights(args.weights, purpose="predict"), device=args.device)


def overlay_name(path: Path, used: set[str]) -> str:
    """``<stem>.png``, with ``_2``, ``_3``... when two inputs share a stem."""
    name, n = f"{path.stem}.png", 1
    while name in used:
        n += 1
        name = f"{path.stem}_{n}.png"
    used.add(name)
    return name


def _write_png(path: Path, image) -> None:
    from PIL import Image

    from maskrcnn.io import atomic_open

    with atomic_open(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")
