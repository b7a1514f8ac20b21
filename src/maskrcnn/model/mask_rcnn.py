"""Mask R-CNN (He, Gkioxari, Dollár, Girshick, ICCV 2017): backbone + FPN, RPN, box and mask RoI heads.

Shapes: N images; image i is 3 x H_i x W_i as given, resized for inference to h_i x w_i (short side ``min_size``,
long side at most ``max_size``, by the ``resize`` rule of ``structures/resize.py``), padded with the rest of the
batch to Hp x Wp (multiples of ``size_divisible``); M mask size.

Training takes images already resized and augmented by the data pipeline (with the same resize rule), with targets
in their pixels: ``{"boxes": (G, 4) xyxy, "labels": (G,) int64 in 1..K, "masks": (G, H, W) uint8, "crowd_boxes":
(C, 4)}``, and returns a dict of named losses. Inference takes images at any size and returns, per image, in its own
pixels: ``{"boxes": (D, 4), "scores": (D,), "labels": (D,), "masks": (D, H, W) bool}``.

The same forward runs eagerly, converted for fast CPU inference (``model/inference.py`` swaps leaves) and traced
for ONNX export (``export.py``): sizes are Python ints eagerly and 0-dim tensors while tracing
(``structures/sizes.py``), so that the exported graph follows each input's size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from maskrcnn.model.fpn import BackboneWithFPN
from maskrcnn.model.roi_heads import RoIHeads
from maskrcnn.model.rpn import RPN
from maskrcnn.structures import masks
from maskrcnn.structures.image_list import ImageList
from maskrcnn.structures.resize import UINT8_RULES, resize_image, resized_shape
from maskrcnn.structures.sizes import size_tensor


class MaskRCNN(nn.Module):
    def __init__(
        self,
        *,
        backbone: BackboneWithFPN,
        rpn: RPN,
        roi_heads: RoIHeads,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
        min_size: int,
        max_size: int,
        size_divisible: int,
        resize: str = "antialias",
        mask_threshold: float = 0.5,
        mask_paste: str = "torchvision",
    ):
        """min_size, max_size, resize (the rule, ``structures/resize.py``): the inference resize (the data pipeline
        resizes training images by the same rule); mask_paste: the rule of ``structures.masks.paste_masks``."""
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), persistent=False)
        self.min_size = min_size
        self.max_size = max_size
        self.size_divisible = size_divisible
        self.resize = resize
        self.mask_threshold = mask_threshold
        self.mask_paste = mask_paste

    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        *,
        score_threshold: float | Tensor = 0.0,
        paste_masks: bool = True,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """images: N x Tensor[3, H_i, W_i], RGB, uint8 or float in [0, 1].

        score_threshold (inference): detections scoring below it are dropped before the mask head, so that no mask
        is computed or pasted for them; the others are exactly those of a threshold of 0.
        paste_masks (inference): False returns each detection's M x M mask probabilities in its box, ``"mask_probs":
        (D, M, M)``, instead of ``"masks"`` pasted into the image (the exported graph ends there).
        """
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        batch = self.preprocess(images)
        features = self.backbone(batch.tensor)  # [P2, P3, P4, P5, P6]
        proposals, rpn_losses = self.rpn(features, batch.image_sizes, tuple(batch.tensor.shape[-2:]), targets)
        detections, roi_losses = self.roi_heads(
            features[:4], proposals, batch.image_sizes, targets, score_threshold=score_threshold
        )
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.postprocess(detections, batch.image_sizes, original_sizes, paste_masks=paste_masks)

    def preprocess(self, images: list[Tensor]) -> ImageList:
        """Scale to [0, 1], normalise, resize (inference only; a uint8 image before normalising when the resize rule
        is one that resamples uint8 pixels), and pad into one batch."""
        prepared = []
        for image in images:
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(f"expected images of shape (3, H, W), got {tuple(image.shape)}")
            resize = not self.training
            if resize and image.dtype == torch.uint8 and self.resize in UINT8_RULES:
                image, resize = self._resize(image), False
            image = image.float() / 255.0 if image.dtype == torch.uint8 else image
            image = (image - self.pixel_mean) / self.pixel_std
            if resize:
                image = self._resize(image)
            prepared.append(image)
        return ImageList.from_tensors(prepared, size_divisible=self.size_divisible)

    def _resize(self, image: Tensor) -> Tensor:
        """(3, H, W) -> (3, h, w) by the inference size and the resize rule."""
        size = resized_shape(*image.shape[-2:], short_size=self.min_size, max_size=self.max_size, rule=self.resize)
        return resize_image(image, size, rule=self.resize)

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
        *,
        paste_masks: bool = True,
    ) -> list[dict[str, Tensor]]:
        """Map boxes back to each original image's pixels and paste the masks there."""
        results = []
        for det, size, original_size in zip(detections, image_sizes, original_sizes):
            # float32 division, so that boxes come out bit-identical to torchvision's for its weights
            scale = size_tensor(original_size).to(torch.float32) / size_tensor(size).to(torch.float32)  # (h, w)
            boxes = det["boxes"] * scale.flip(0).repeat(2).to(det["boxes"])  # (x, y, x, y)
            result = {"boxes": boxes, "scores": det["scores"], "labels": det["labels"]}
            if paste_masks:
                result["masks"] = masks.paste_masks(
                    det["mask_probs"], boxes, original_size, threshold=self.mask_threshold, rule=self.mask_paste
                )
            else:
                result["mask_probs"] = det["mask_probs"]
            results.append(result)
        return results
