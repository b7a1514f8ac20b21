"""What the model-zoo tests download: a fake published file and registry entries for it."""

from __future__ import annotations

import hashlib
import os

from maskrcnn.http import RetryPolicy
from maskrcnn.zoo.registry import WeightsEntry

FAST = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=2.0)
DATA = os.urandom(300_000)  # the "published" file
PATH = "models/w-1234.pth"  # where the test server has it


def entry_for(url: str, data: bytes = DATA, *, name: str = "test-weights", **fields) -> WeightsEntry:
    """A detector entry for ``data`` at ``url``. Checks default to torchvision's (the SHA-256 prefix of the file
    name); ``fields`` replace any field."""
    defaults = {
        "architecture": "R50-FPN", "source": "tests", "kind": "detector", "box_ap": 1.0, "mask_ap": 1.0,
        "size_mb": len(data) / 1e6,
    }  # fmt: skip
    if not any(k in fields for k in ("sha256", "sha256_prefix", "md5_prefix")):
        fields["sha256_prefix"] = hashlib.sha256(data).hexdigest()[:8]
    return WeightsEntry(name=name, url=url, **{**defaults, **fields})
