"""The model zoo: published Mask R-CNN and backbone weights by name, downloaded once and checked.

    from maskrcnn.zoo import resolve_weights
    path = resolve_weights("coco-r50-fpn", purpose="predict")   # a file path, or a known name -> cached file

registry.py lists the known files; cache.py downloads and checks them; resolve.py turns ``--weights`` values into
files; safe_pickle.py reads detectron2's ``.pkl`` files without running code; detectron2.py maps their parameter
names to ours.
"""

from __future__ import annotations

from maskrcnn.zoo.cache import cache_path, fetch, weights_home
from maskrcnn.zoo.registry import ENTRIES, WeightsEntry, find_entry
from maskrcnn.zoo.resolve import resolve_weights

__all__ = ["ENTRIES", "WeightsEntry", "cache_path", "fetch", "find_entry", "resolve_weights", "weights_home"]
