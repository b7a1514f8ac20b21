"""maskrcnn: Mask R-CNN instance segmentation on PyTorch.

    import maskrcnn
    model = maskrcnn.load("weights.pth", device="cpu")   # ours, or torchvision's maskrcnn_resnet50_fpn file
    model = maskrcnn.load("coco-r50-fpn")                # a published file by name: downloaded once, checked
    results = model.predict(["image.jpg"])               # boxes, scores, labels, class_names, masks per image
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(weights, device: str = "cpu"):
    """Load a weights file, or published weights by name (``maskrcnn weights list``), into a
    ``maskrcnn.predict.Predictor`` (see there). Imports torch on first use."""
    from maskrcnn.predict import load as _load
    from maskrcnn.zoo import resolve_weights

    return _load(resolve_weights(weights, purpose="predict"), device=device)
