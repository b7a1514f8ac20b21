"""maskrcnn: Mask R-CNN instance segmentation on PyTorch."""

__version__ = "0.1.0"
