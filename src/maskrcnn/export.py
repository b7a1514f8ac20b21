"""ONNX export of a Mask R-CNN, and ``OnnxPredictor`` to run the exported file with ONNX Runtime.

    maskrcnn export --weights model.pt --format onnx --output model.onnx
    maskrcnn predict photos/ --backend onnxruntime --weights model.onnx --output out/

The graph takes one image of any size and runs everything up to the mask probabilities, postprocessing included:

    inputs:  image            uint8   [3, H, W]  RGB
             score_threshold  float32 []         detections scoring below it are dropped before the mask head
    outputs: boxes            float32 [D, 4]     x1, y1, x2, y2 in the image's pixels
             scores           float32 [D]        decreasing
             labels           int64   [D]        1..K
             mask_probs       float32 [D, M, M]  each detection's mask in its box, at M x M (28)

(normalisation, resize, padding, backbone, RPN with anchors, box decoding, score filtering and NMS, RoIAlign, the
box and mask heads). The graph is a trace of the model's own forward (the Predictor's, norms folded), through
``ExportAdapter``, which only maps the one image's output dict to these four tensors; the model keeps its sizes as
tensors while traced (``structures/sizes.py``), so the graph follows each input's size. Pasting the M x M masks
into the full image is left to ``OnnxPredictor``, which uses the same ``paste_masks`` as the PyTorch model: in the
graph it would be a loop of per-detection resizes that ONNX expresses poorly (and runtimes run slowly), and keeping
one implementation keeps the masks of both paths identical.

The file's metadata holds what a predictor needs besides the graph: ``maskrcnn_format`` (= "maskrcnn-onnx"),
``maskrcnn_version``, ``class_names`` and ``category_ids`` (JSON lists), ``mask_threshold``, ``mask_paste`` (the
pasting rule: "torchvision", or "detectron2" for its weights), and ``config`` (the model's config as JSON).
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from maskrcnn.errors import UserError
from maskrcnn.structures.masks import PASTE_RULES

if TYPE_CHECKING:
    from maskrcnn.predict import Prediction, Predictor

FORMAT = "maskrcnn-onnx"
VERSION = 1
MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode (the unaligned RoIAlign of torchvision's weights)
DEFAULT_OPSET = 17
INPUT_NAMES = ["image", "score_threshold"]
OUTPUT_NAMES = ["boxes", "scores", "labels", "mask_probs"]


def export_onnx(predictor: Predictor, output: str | os.PathLike, *, opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Trace ``predictor``'s model to an ONNX file at ``output``, atomically (the model is moved to the CPU).

    Returns {"path", "bytes", "seconds", "opset"}. UserError for an unsupported opset or a missing onnx package.
    """
    from maskrcnn.config import to_dict
    from maskrcnn.io import atomic_write_bytes

    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset} is too old: the graph needs ONNX opset {MIN_OPSET} or newer (RoiAlign)")
    onnx = _import("onnx")
    start = time.perf_counter()
    model = ExportAdapter(predictor.model.cpu())
    # A textured example image: the trace records operations, not the example's sizes or detections.
    generator = torch.Generator().manual_seed(0)
    example = (torch.rand((3, 480, 640), generator=generator) * 255).to(torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python values in torchvision's checks (asserts, NMS size heuristics) that do not
        # change the graph; tests/export checks the exported graph against the PyTorch model on several sizes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example, torch.tensor(0.0)),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes={
                "image": {1: "height", 2: "width"},
                **{name: {0: "detections"} for name in OUTPUT_NAMES},
            },
        )
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {
        "maskrcnn_format": FORMAT,
        "maskrcnn_version": str(VERSION),
        "class_names": json.dumps(list(predictor.class_names)),
        "category_ids": json.dumps([int(c) for c in predictor.category_ids]),
        "mask_threshold": repr(float(predictor.model.mask_threshold)),
        "mask_paste": predictor.model.mask_paste,
        "config": json.dumps(to_dict(predictor.config)),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    atomic_write_bytes(output, data)
    return {"path": Path(output), "bytes": len(data), "seconds": time.perf_counter() - start, "opset": opset}


class ExportAdapter(nn.Module):
    """(image, score_threshold) -> (boxes, scores, labels, mask_probs): the model's output for one image, as the
    graph's tensors (shapes in the module docstring)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image: Tensor, score_threshold: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        out = self.model([image], score_threshold=score_threshold, paste_masks=False)[0]
        return out["boxes"], out["scores"], out["labels"], out["mask_probs"]


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise UserError(f"the {name} package is not installed: pip install 'maskrcnn[onnx]'") from None


class OnnxPredictor:
    """An exported model run by ONNX Runtime; ``predict_arrays`` / ``predict`` as ``maskrcnn.predict.Predictor``."""

    def __init__(
        self,
        session: Any,
        *,
        class_names: list[str],
        category_ids: list[int],
        mask_threshold: float,
        mask_paste: str = "torchvision",
        config: dict[str, Any] | None = None,
    ):
        """mask_paste: the rule of ``structures.masks.paste_masks`` the model was built with."""
        self.session = session
        self.class_names = list(class_names)
        self.category_ids = list(category_ids)
        self.mask_threshold = mask_threshold
        self.mask_paste = mask_paste
        self.config = config or {}

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, threads: int = 0) -> OnnxPredictor:
        """Load an ONNX file written by ``export_onnx``; ``threads`` 0 lets ONNX Runtime choose.

        UserError naming the file when it is missing, unreadable, not ONNX, or not a maskrcnn export.
        """
        path = Path(path)
        if not path.is_file():
            raise UserError(f"ONNX model file not found: {path}")
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - every load failure means the file is not a usable model
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            reason = reason.split(" failed:", 1)[-1].strip()  # drop ONNX Runtime's "... Load model from <path> failed:"
            raise UserError(f"cannot load ONNX model {path}: {reason}") from None
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("maskrcnn_format") != FORMAT:
            raise UserError(f"{path} is an ONNX model but not a maskrcnn export (no maskrcnn metadata): "
                            f"make one with `maskrcnn export --format onnx`")
        if int(meta.get("maskrcnn_version", "0")) > VERSION:
            raise UserError(f"{path} has export version {meta['maskrcnn_version']}; this maskrcnn reads up to {VERSION}")
        names = [i.name for i in session.get_inputs()]
        if names != INPUT_NAMES:
            raise UserError(f"{path} has inputs {names}, expected {INPUT_NAMES}")
        paste = meta.get("mask_paste", "torchvision")  # files exported before it was recorded: v1 rule
        if paste not in PASTE_RULES:
            raise UserError(f"{path} has an unknown mask pasting rule {paste!r} in its maskrcnn metadata; this maskrcnn "
                            f"knows {', '.join(PASTE_RULES)}")
        try:
            return cls(
                session,
                class_names=json.loads(meta["class_names"]),
                category_ids=json.loads(meta["category_ids"]),
                mask_threshold=float(meta["mask_threshold"]),
                mask_paste=paste,
                config=json.loads(meta.get("config", "{}")),
            )
        except (KeyError, ValueError) as e:
            raise UserError(f"{path} has damaged maskrcnn metadata ({e})") from None

    def run(self, image: np.ndarray, *, score_threshold: float = 0.0) -> dict[str, np.ndarray]:
        """image: ndarray[H, W, 3] uint8 RGB -> the graph's outputs {"boxes", "scores", "labels", "mask_probs"}."""
        feed = {
            "image": np.ascontiguousarray(image.transpose(2, 0, 1)),  # (H, W, 3) -> (3, H, W)
            "score_threshold": np.asarray(score_threshold, dtype=np.float32),
        }
        return dict(zip(OUTPUT_NAMES, self.session.run(OUTPUT_NAMES, feed)))

    def predict_arrays(self, images: list[np.ndarray], *, score_threshold: float = 0.5) -> list[Prediction]:
        """images: RGB ndarray[H, W, 3] uint8 each -> one ``Prediction`` per image (masks pasted at full size)."""
        from maskrcnn.predict import Prediction
        from maskrcnn.structures.masks import paste_masks

        predictions = []
        for image in images:
            out = self.run(image, score_threshold=score_threshold)
            masks = paste_masks(
                torch.from_numpy(out["mask_probs"]),
                torch.from_numpy(out["boxes"]),
                (image.shape[0], image.shape[1]),
                threshold=self.mask_threshold,
                rule=self.mask_paste,
            )
            predictions.append(
                Prediction.from_arrays(
                    boxes=out["boxes"], scores=out["scores"], labels=out["labels"], masks=masks.numpy(),
                    class_names=self.class_names, category_ids=self.category_ids,
                )
            )
        return predictions

    def predict(self, images: Any | Iterable[Any], *, score_threshold: float = 0.5) -> list[Prediction]:
        """Paths, PIL images or HxWx3 uint8 arrays (one or a list) -> one ``Prediction`` per image, in order."""
        from PIL import Image

        from maskrcnn.predict import as_rgb_array

        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            images = [images]
        return [self.predict_arrays([as_rgb_array(im)], score_threshold=score_threshold)[0] for im in images]
