"""Mask R-CNN (He, Gkioxari, Dollár, Girshick, ICCV 2017): backbone + FPN, RPN, box and mask RoI heads.

Shapes: N images; image i is 3 x H_i x W_i as given, resized for inference to h_i x w_i (short side ``min_size``,
long side at most ``max_size``), padded with the rest of the batch to Hp x Wp (multiples of ``size_divisible``).

Training takes images already resized and augmented by the data pipeline, with targets in their pixels:
``{"boxes": (G, 4) xyxy, "labels": (G,) int64 in 1..K, "masks": (G, H, W) uint8, "crowd_boxes": (C, 4)}``, and
returns a dict of named losses. Inference takes images at any size and returns, per image, in its own pixels:
``{"boxes": (D, 4), "scores": (D,), "labels": (D,), "masks": (D, H, W) bool}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.model.fpn import BackboneWithFPN
from maskrcnn.model.roi_heads import RoIHeads
from maskrcnn.model.rpn import RPN
from maskrcnn.structures.image_list import ImageList
from maskrcnn.structures.masks import paste_masks


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
        mask_threshold: float = 0.5,
    ):
        """min_size, max_size: the inference resize (the data pipeline resizes training images)."""
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), persistent=False)
        self.min_size = min_size
        self.max_size = max_size
        self.size_divisible = size_divisible
        self.mask_threshold = mask_threshold

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None, *, score_threshold: float = 0.0
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """images: N x Tensor[3, H_i, W_i], RGB, uint8 or float in [0, 1].

        score_threshold (inference): detections scoring below it are dropped before the mask head, so that no mask
        is computed or pasted for them; the others are exactly those of a threshold of 0.
        """
        original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        batch = self.preprocess(images)
        features = self.backbone(batch.tensor)  # [P2, P3, P4, P5, P6]
        padded_size = (int(batch.tensor.shape[-2]), int(batch.tensor.shape[-1]))
        proposals, rpn_losses = self.rpn(features, batch.image_sizes, padded_size, targets)
        detections, roi_losses = self.roi_heads(
            features[:4], proposals, batch.image_sizes, targets, score_threshold=score_threshold
        )
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.postprocess(detections, batch.image_sizes, original_sizes)

    def preprocess(self, images: list[Tensor]) -> ImageList:
        """Scale to [0, 1], normalise, resize (inference only), and pad into one batch."""
        prepared = []
        for image in images:
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(f"expected images of shape (3, H, W), got {tuple(image.shape)}")
            image = image.float() / 255.0 if image.dtype == torch.uint8 else image
            image = (image - self.pixel_mean) / self.pixel_std
            if not self.training:
                image = self._resize(image)
            prepared.append(image)
        return ImageList.from_tensors(prepared, size_divisible=self.size_divisible)

    def _resize(self, image: Tensor) -> Tensor:
        """Bilinear resize so that the short side is ``min_size`` and the long side at most ``max_size``."""
        height, width = image.shape[-2:]
        scale = min(self.min_size / min(height, width), self.max_size / max(height, width))
        # (3, H, W) -> (1, 3, H, W) -> (1, 3, floor(H * scale), floor(W * scale)) -> (3, h, w)
        return F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Map boxes back to each original image's pixels and paste the masks there."""
        results = []
        for det, (h, w), (orig_h, orig_w) in zip(detections, image_sizes, original_sizes):
            # float32 division, so that boxes come out bit-identical to torchvision's for its weights
            scale = torch.tensor([orig_w, orig_h], dtype=torch.float32) / torch.tensor([w, h], dtype=torch.float32)
            boxes = det["boxes"] * scale.repeat(2).to(det["boxes"])  # (x, y, x, y)
            masks = paste_masks(det["mask_probs"], boxes, (orig_h, orig_w), threshold=self.mask_threshold)
            results.append({"boxes": boxes, "scores": det["scores"], "labels": det["labels"], "masks": masks})
        return results

