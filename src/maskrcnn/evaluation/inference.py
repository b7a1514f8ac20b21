"""Running a model over a COCO dataset, for scoring it: every image of the json -> COCO results with its ids.

    predictor = Predictor.from_file("model.pt")
    results = predict_coco_results(predictor, CocoDataset(Path("val.json")))
    evaluate_coco(Path("val.json"), results)

Detections of categories the json does not have (e.g. torchvision's unused COCO label indices) are dropped, with one
note. All detections above the model's own score threshold are kept (score threshold 0), as COCO AP expects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.images import read_image
from maskrcnn.errors import UserError
from maskrcnn.predict import Predictor, check_batch_size

logger = logging.getLogger(__name__)


def predict_coco_results(
    predictor: Predictor, dataset: CocoDataset, *, batch_size: int = 1, progress: bool = True
) -> list[dict[str, Any]]:
    """Run ``predictor`` over every image of ``dataset`` -> COCO results with its json's image and category ids.

    ``UserError`` when the model's categories share no id with the json's (a model of another dataset).
    """
    check_batch_size(batch_size)
    known = set(dataset.categories)
    if not known & set(predictor.category_ids):
        raise UserError(
            f"the model's categories {predictor.category_ids[:10]} share no id with those of {dataset.json_path} "
            f"({sorted(known)[:10]}): was it trained on another dataset?"
        )
    results: list[dict[str, Any]] = []
    dropped = 0
    bar = tqdm(total=len(dataset), unit="img", desc="predict", disable=not progress or len(dataset) < 2)
    for start in range(0, len(dataset), batch_size):
        chunk = range(start, min(start + batch_size, len(dataset)))
        arrays = [read_image(dataset.image_path(i)) for i in chunk]
        for i, prediction in zip(chunk, predictor.predict_arrays(arrays, score_threshold=0.0)):
            for item in prediction.to_coco(image_id=dataset.image_ids[i]):
                if item["category_id"] in known:
                    results.append(item)
                else:
                    dropped += 1
        bar.update(len(chunk))
    bar.close()
    if dropped:
        logger.warning("dropped %d detections of categories that %s does not have", dropped, dataset.json_path)
    return results


def predict_coco_dataset(
    weights: Path, gt_json: Path, *, images_dir: Path | None, device: str, batch_size: int
) -> list[dict[str, Any]]:
    """Load ``weights`` and predict every image of the COCO json ``gt_json`` (see ``predict_coco_results``); the
    arguments are checked before the model is loaded."""
    check_batch_size(batch_size)
    dataset = CocoDataset(gt_json, images_dir)
    predictor = Predictor.from_file(weights, device=device)
    return predict_coco_results(predictor, dataset, batch_size=batch_size)
