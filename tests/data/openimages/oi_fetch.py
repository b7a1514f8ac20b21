"""How the tests call the downloader: against a MirrorServer, with retries milliseconds apart."""

from __future__ import annotations

from pathlib import Path

from oi_server import MirrorServer

from maskrcnn.data.openimages.download import download_openimages
from maskrcnn.http import RetryPolicy
from maskrcnn.data.openimages.report import DownloadReport

# A failure costs milliseconds, a stalled request 1 s.
FAST_RETRY = RetryPolicy(attempts=4, backoff_s=0.01, timeout_s=1.0)

# The run most tests compare against: Cat + Traffic light, 4 images per class, seed 3.
REFERENCE = {"classes": ["Cat", "Traffic light"], "max_images_per_class": 4, "seed": 3}


def fetch(server: MirrorServer, out: Path, **kw) -> DownloadReport:
    kw.setdefault("classes", ["Cat", "Traffic light"])
    return download_openimages(
        split="validation",
        output_dir=out,
        annotations_url=server.url + "ann/",
        images_url=server.url + "img/",
        retry=FAST_RETRY,
        workers=4,
        **kw,
    )
