"""Prediction: weights file + images -> instances, and their COCO results form.

    import maskrcnn
    model = maskrcnn.load("weights.pth", device="cpu")
    for result in model.predict(["a.jpg", "b.png"]):
        print(result.class_names, result.scores, result.masks.shape)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from maskrcnn.checkpoint import load_checkpoint, load_state_into
from maskrcnn.config import Config
from maskrcnn.data.images import read_image, to_rgb_array
from maskrcnn.errors import ArgumentError, UserError
from maskrcnn.model.build import build_model
from maskrcnn.model.inference import prepare_for_inference
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.structures.masks import bitmap_to_rle

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


@dataclass
class Prediction:
    """Instances found in one image, in its pixels, sorted by decreasing score.

    boxes: ndarray[D, 4] float32 (x1, y1, x2, y2); scores: ndarray[D] float32; labels: ndarray[D] int64 model
    labels 1..K; class_names: D names; category_ids: ndarray[D] int64 dataset category ids;
    masks: ndarray[D, H, W] bool.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    category_ids: np.ndarray
    masks: np.ndarray

    @classmethod
    def from_arrays(
        cls, *, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, masks: np.ndarray,
        class_names: list[str], category_ids: list[int],
    ) -> Prediction:
        """One image's detections as arrays (labels 1..K) -> a Prediction, labels named by ``class_names`` and
        mapped to the dataset's ``category_ids`` (both K long, in label order)."""
        labels = labels.astype(np.int64)
        return cls(
            boxes=boxes.astype(np.float32),
            scores=scores.astype(np.float32),
            labels=labels,
            class_names=[class_names[k - 1] for k in labels],
            category_ids=np.array([category_ids[k - 1] for k in labels], dtype=np.int64),
            masks=masks,
        )

    def __len__(self) -> int:
        return len(self.scores)

    def to_coco(self, *, image_id: int, file_name: str | None = None) -> list[dict[str, Any]]:
        """COCO results: one dict per instance with bbox [x, y, w, h], score, category_id, RLE segmentation."""
        results = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            item: dict[str, Any] = {"image_id": int(image_id)}
            if file_name is not None:
                item["file_name"] = file_name
            item.update(
                category_id=int(self.category_ids[i]),
                category_name=self.class_names[i],
                bbox=[round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                score=round(float(self.scores[i]), 5),
                segmentation=bitmap_to_rle(self.masks[i]),
            )
            results.append(item)
        return results


def resolve_device(device: str) -> torch.device:
    """"cpu", "cuda" or "cuda:N" -> torch.device; UserError for anything else or for CUDA without a GPU."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ArgumentError("device", f"unknown {{arg}} {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ArgumentError("device", f"unsupported {{arg}} {device!r}; use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError("device", f"{{arg}} {device!r} requested but no CUDA GPU is available; use {{arg}} cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ArgumentError(
                "device", f"{{arg}} {device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) found"
            )
    return dev


def as_rgb_array(image: ImageInput) -> np.ndarray:
    """A path, PIL image or array (H x W gray, H x W x 3 RGB, H x W x 4 RGBA) -> ndarray[H, W, 3] uint8."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise UserError(f"the image of size {image.width}x{image.height} has no pixels")
        return to_rgb_array(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise UserError(f"expected an H x W x 3 image array, got shape {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise UserError(f"the image array of shape {image.shape} has no pixels")
        image = image[:, :, :3]
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        elif image.dtype != np.uint8:
            if np.issubdtype(image.dtype, np.floating) and image.max(initial=0) <= 1.0:
                image = image * 255.0
            image = np.clip(image, 0, 255).round().astype(np.uint8)
        image = np.ascontiguousarray(image)
        return image if image.flags.writeable else image.copy()
    raise UserError(f"cannot use a {type(image).__name__} as an image; give a path, a PIL image or an array")


class Predictor:
    """A model ready for inference, with its class names; built by ``maskrcnn.load``."""

    def __init__(
        self,
        model: MaskRCNN,
        *,
        config: Config,
        class_names: list[str],
        category_ids: list[int],
        device: torch.device,
        prepared: bool = False,
    ):
        """model: a MaskRCNN with its weights; the Predictor runs a converted copy of it, made for fast inference
        (``model.inference.prepare_for_inference``: folded norms, fast CPU leaves, channels-last), and leaves
        ``model`` as it is, apart from ``eval()`` and ``to(device)``. prepared: ``model`` is that conversion already."""
        model = model.eval().to(device)
        self.model = model if prepared else prepare_for_inference(model)
        self.config = config
        self.class_names = list(class_names)
        self.category_ids = list(category_ids)
        self.device = device

    @classmethod
    def from_file(cls, weights: str | os.PathLike, *, device: str = "cpu") -> Predictor:
        dev = resolve_device(device)
        ckpt = load_checkpoint(weights)
        model = build_model(ckpt.config.model)
        load_state_into(model, ckpt.state_dict, path=weights)
        config, class_names, category_ids = ckpt.config, ckpt.class_names, ckpt.category_ids
        del ckpt  # the weights now live in the model only
        model = prepare_for_inference(model.to(dev), inplace=True)  # no one else holds this model: no copy
        return cls(model, config=config, class_names=class_names, category_ids=category_ids, device=dev, prepared=True)

    @torch.inference_mode()
    def predict_arrays(self, images: list[np.ndarray], *, score_threshold: float = 0.5) -> list[Prediction]:
        """images: RGB ndarray[H, W, 3] uint8 each -> one Prediction per image (run as one batch)."""
        if not images:
            return []
        # (H, W, 3) -> (3, H, W)
        tensors = [torch.from_numpy(im).permute(2, 0, 1).to(self.device) for im in images]
        outputs = self.model(tensors, score_threshold=score_threshold)
        return [self._to_prediction(out) for out in outputs]

    def predict(
        self, images: ImageInput | Iterable[ImageInput], *, score_threshold: float = 0.5, batch_size: int = 1
    ) -> list[Prediction]:
        """Paths, PIL images or HxWx3 uint8 arrays (one or a list) -> one Prediction per image, in order."""
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            images = [images]
        return list(self.iter_predict(images, score_threshold=score_threshold, batch_size=batch_size))

    def iter_predict(
        self, images: Iterable[ImageInput], *, score_threshold: float = 0.5, batch_size: int = 1
    ) -> Iterator[Prediction]:
        check_batch_size(batch_size)
        batch: list[np.ndarray] = []
        for image in images:
            batch.append(as_rgb_array(image))
            if len(batch) == batch_size:
                yield from self.predict_arrays(batch, score_threshold=score_threshold)
                batch = []
        yield from self.predict_arrays(batch, score_threshold=score_threshold)

    def _to_prediction(self, out: dict[str, torch.Tensor]) -> Prediction:
        """The model's output for one image (already without detections under the score threshold)."""
        return Prediction.from_arrays(
            **{k: out[k].cpu().numpy() for k in ("boxes", "scores", "labels", "masks")},
            class_names=self.class_names,
            category_ids=self.category_ids,
        )


def check_batch_size(batch_size: int) -> None:
    """``ArgumentError`` unless ``batch_size`` (images per forward pass) is at least 1."""
    if batch_size < 1:
        raise ArgumentError("batch_size", f"{{arg}} must be at least 1, got {batch_size}")


def load(weights: str | os.PathLike, device: str = "cpu") -> Predictor:
    """Load a maskrcnn checkpoint, a torchvision maskrcnn_resnet50_fpn(_v2) state dict or a detectron2 model-zoo file,
    ready to ``predict``."""
    return Predictor.from_file(weights, device=device)
