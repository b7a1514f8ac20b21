"""A run killed (SIGKILL) in the middle, then run again, ends with the same dataset as an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from oi_fetch import REFERENCE, fetch
from oi_server import MirrorServer


@pytest.mark.parametrize("hang_on", [".jpg", ".zip"], ids=["during-images", "during-masks"])
def test_killed_run_resumes_to_the_same_dataset(mirror, reference, tmp_path, hang_on):
    out = tmp_path / "out"
    with MirrorServer(mirror.root) as server:
        # The 4th image request / the 3rd zip request never gets an answer: the run is stuck there when killed.
        server.inject(hang_on, "hang", times=1, skip=3 if hang_on == ".jpg" else 2)
        command = [sys.executable, "-m", "maskrcnn", "openimages", "download", "--classes", "Cat,Traffic light",
                   "--split", "validation", "--max-images-per-class", str(REFERENCE["max_images_per_class"]),
                   "--seed", str(REFERENCE["seed"]), "--workers", "2", "--output", str(out),
                   "--annotations-url", server.url + "ann/", "--images-url", server.url + "img/"]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert server.hanging.wait(120), process.communicate(timeout=5)
            time.sleep(0.3)  # the other worker may be mid-write: kill it wherever it is
        finally:
            process.kill()
            process.communicate()
        assert not (out / "annotations.json").exists()
        done_before = sorted(p.name for p in (out / "images").glob("*.jpg"))
        assert done_before  # some work was done and must not be redone

        server.clear_faults()
        server.reset_counters()
        report = fetch(server, out, **REFERENCE)
    assert report.complete
    assert (out / "annotations.json").read_bytes() == reference
    assert report.images_reused >= len(done_before) > 0
    if hang_on == ".zip":
        assert report.images_fetched == 0 and report.masks_reused > 0
    fetched_jpgs = [path for path, _, _ in server.log if path.endswith(".jpg")]
    assert not {p.rsplit("/", 1)[1] for p in fetched_jpgs} & set(done_before)
    assert not list(out.rglob("*.tmp"))  # what the kill left half-written is gone
