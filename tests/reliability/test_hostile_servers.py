"""Items 5 and 6: a server may send too much, too slowly or the wrong bytes; the download client's memory, disk and
time stay bounded, and each request fails with one clear reason. Memory is Python's own peak (tracemalloc), taken
while the client reads from ``hostile.HostileServer`` (see there for what each path sends)."""

from __future__ import annotations

import threading
import tracemalloc

import pytest
from hostile import HostileServer, elapsed

from maskrcnn.data.openimages.image_fetch import MAX_IMAGE_BYTES, fetch_images
from maskrcnn.http import FetchError, HttpClient, RetryPolicy

MIB = 1 << 20
# Tries 2 (so that a retried fault shows), reads time out after 1 s, a try ends 1 s (+ its body at 64 KiB/s) after
# it began. The trickling paths send a byte every 0.25 s: every read is on time, the whole never is.
POLICY = RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=1.0, deadline_s=1.0)


@pytest.fixture
def server():
    with HostileServer() as s:
        yield s


@pytest.fixture
def peak_memory():
    """Call it around the work: returns the peak of Python's allocations during it, in bytes."""
    tracemalloc.start()

    def measure(function, *args, **kwargs):
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        outcome = function(*args, **kwargs)
        return outcome, tracemalloc.get_traced_memory()[1] - base

    yield measure
    tracemalloc.stop()


def _bounded_in_time(function, *args, limit_s: float = 60.0, **kwargs):
    """Run ``function`` -> (its result or exception, seconds); fail if it is still running after ``limit_s`` (the
    thread is left to end when the server stops)."""
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(elapsed(function, *args, **kwargs)), daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        pytest.fail(f"still running after {limit_s} s")
    return outcome[0]


@pytest.mark.parametrize(
    "path, call, reason, tries, most_bytes",
    [
        # a body past the size the caller allows: refused for good, at once, without reading an announced one
        ("endless", "get", "the body is more than the 1048576 bytes allowed", 1, MIB + 1),
        ("announced", "get", f"the body is {1 << 30} bytes, more than the 1048576 allowed", 1, 0),
        ("endless", "download", f"the body is more than the {MAX_IMAGE_BYTES} bytes allowed", 1, MAX_IMAGE_BYTES + 1),
        ("announced", "download", f"the body is {1 << 30} bytes, more than the {MAX_IMAGE_BYTES} allowed", 1, 0),
        # a 206 carrying more than the 1 KiB range asked: refused from its headers, or cut off after the range
        ("range-oversized", "range", f"server announced {512 << 20} bytes where 1024 were expected", 2, 0),
        ("range-endless", "range", "server sent more than the 1024 bytes expected", 2, 2 * 1025),
    ],
)
def test_a_body_larger_than_expected_is_cut_off_with_memory_bounded(
    path, call, reason, tries, most_bytes, server, peak_memory, tmp_path
):
    http = HttpClient(policy=POLICY)
    target = tmp_path / "file"
    calls = {
        "get": lambda: http.get(server.url + path, max_bytes=MIB),
        "download": lambda: http.download(server.url + path, target, max_bytes=MAX_IMAGE_BYTES),
        "range": lambda: http.get(server.url + path, byte_range=(0, 1024)),
    }
    (error, _), peak = peak_memory(_bounded_in_time, calls[call])
    assert isinstance(error, FetchError) and reason in str(error), error
    assert http.requests == tries == server.requests
    assert http.bytes_received <= most_bytes
    assert peak < 4 * MIB, f"peak {peak / MIB:.1f} MiB"  # a chunk or two, whatever the server sent
    assert not list(tmp_path.iterdir())  # nothing left on disk


@pytest.mark.parametrize("path, call", [("trickle", "get"), ("trickle", "download"), ("trickle-headers", "get")])
def test_a_trickling_server_is_cut_off_at_the_deadline_and_retried(path, call, server, tmp_path):
    http = HttpClient(policy=POLICY)
    calls = {"get": lambda: http.get(server.url + path), "download": lambda: http.download(server.url + path,
                                                                                            tmp_path / "file")}
    error, seconds = _bounded_in_time(calls[call])
    assert isinstance(error, FetchError) and "sent no complete answer within the 1 s deadline after 2 tries" in str(
        error), error  # fmt: skip
    assert server.requests == 2
    assert seconds < 2 * 1.5 + 2  # two tries of about 1 s; a whole answer would take 250 s a try
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "path, call, reason",
    [
        ("range-wrong", "range", "server sent Content-Range 'bytes 1000-2023/1073741824' for a range at 0"),
        ("drop", "get", "connection to 127.0.0.1"),
        ("drop", "download", "closed early (50000 bytes read, 50000 more expected)"),
    ],
)
def test_wrong_bytes_and_dropped_connections_are_retried_then_reported(path, call, reason, server, tmp_path):
    http = HttpClient(policy=POLICY)
    calls = {
        "get": lambda: http.get(server.url + path),
        "download": lambda: http.download(server.url + path, tmp_path / "file"),
        "range": lambda: http.get(server.url + path, byte_range=(0, 1024)),
    }
    error, _ = _bounded_in_time(calls[call])
    assert isinstance(error, FetchError) and reason in str(error) and "after 2 tries" in str(error), error
    assert server.requests == 2
    assert http.bytes_received <= 2 * 50000
    assert not list(tmp_path.iterdir())


def test_open_images_download_from_a_mirror_that_streams_endless_images(server, peak_memory, tmp_path):
    # The case: a mirror answering each image with an endless body (1 GiB here). Each worker reads at most
    # MAX_IMAGE_BYTES to a temporary file, a chunk at a time, then gives that image up.
    http = HttpClient(policy=POLICY)
    ids = ["0a", "1b", "2c", "3d"]
    outcome, peak = peak_memory(_bounded_in_time, fetch_images, ids, http=http, images_url=server.url + "endless",
                                split="validation", output_dir=tmp_path, workers=4)  # fmt: skip
    fetch = outcome[0]
    assert not isinstance(fetch, Exception), fetch
    assert fetch.fetched == 0 and sorted(fetch.failed) == ids
    assert all(f"more than the {MAX_IMAGE_BYTES} bytes allowed (1 try)" in reason for reason in fetch.failed.values())
    assert http.bytes_received <= len(ids) * (MAX_IMAGE_BYTES + 1)
    assert peak < 4 * 2 * MIB + 2 * MIB, f"peak {peak / MIB:.1f} MiB"  # a chunk or two per worker
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
