from __future__ import annotations

import os
import socket

import pytest
from oi_server import MirrorServer

from maskrcnn.http import FetchError, HttpClient, RetryPolicy

FAST = RetryPolicy(attempts=4, backoff_s=0.01, timeout_s=1.0)


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    data = os.urandom(300_000)
    (root / "blob.bin").write_bytes(data)
    return root, data


@pytest.mark.parametrize("fault", ["500", "drop", "stall"])
def test_transient_failures_are_retried(files, fault):
    root, data = files
    with MirrorServer(root, stall_s=2.5) as server:
        server.inject("blob", fault, times=2)
        http = HttpClient(policy=FAST)
        assert http.get(server.url + "blob.bin") == data
        assert http.get(server.url + "blob.bin", byte_range=(1000, 1010)) == data[1000:1010]
        assert [status for _, _, status in server.log][-1] == 206
        assert http.requests == 4  # two failures, then the whole file, then the range


def test_failure_after_all_retries_names_url_and_reason(files):
    root, _ = files
    with MirrorServer(root) as server:
        server.inject("blob", "500", times=10)
        with pytest.raises(FetchError) as e:
            HttpClient(policy=FAST).get(server.url + "blob.bin")
        assert "blob.bin" in str(e.value) and "HTTP 500" in str(e.value) and "after 4 tries" in str(e.value)
        assert server.requests == 4


def test_not_found_is_not_retried(files):
    root, _ = files
    with MirrorServer(root) as server:
        with pytest.raises(FetchError, match="HTTP 404") as e:
            HttpClient(policy=FAST).get(server.url + "missing.bin")
        assert e.value.status == 404 and server.requests == 1


def test_unreachable_host_is_flagged():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match=f"connection to 127.0.0.1:{port} refused") as e:
        HttpClient(policy=FAST).get(f"http://127.0.0.1:{port}/x")
    assert e.value.unreachable


def test_download_resumes_a_dropped_transfer_with_range(files, tmp_path):
    root, data = files
    with MirrorServer(root) as server:
        server.inject("blob", "drop", times=1)
        target = tmp_path / "out" / "blob.bin"
        assert HttpClient(policy=FAST).download(server.url + "blob.bin", target) == len(data)
        assert target.read_bytes() == data
        # The retry asked only for the missing second half.
        assert server.log[1][1] == f"bytes={len(data) // 2}-" and server.bytes_sent == len(data)
        assert [p.name for p in target.parent.iterdir()] == ["blob.bin"]  # no temp file left


def test_failed_download_leaves_nothing(files, tmp_path):
    root, _ = files
    with MirrorServer(root) as server:
        server.inject("blob", "drop", times=10)
        target = tmp_path / "out" / "blob.bin"
        with pytest.raises(FetchError):
            HttpClient(policy=FAST).download(server.url + "blob.bin", target)
        assert list(target.parent.iterdir()) == []


def test_unreachable_host_is_not_retried_for_long():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = HttpClient(policy=RetryPolicy(attempts=10, backoff_s=0.01, timeout_s=0.5))
    with pytest.raises(FetchError, match="after 2 tries"):
        http.get(f"http://127.0.0.1:{port}/x")
    assert http.requests == 2


def test_content_that_fails_its_check_is_retried_then_reported(files):
    root, data = files
    seen = []

    def check(body: bytes) -> None:
        seen.append(len(body))
        if len(seen) < 3:
            raise ValueError("truncated image")

    with MirrorServer(root) as server:
        http = HttpClient(policy=FAST)
        assert http.get(server.url + "blob.bin", validate=check) == data and len(seen) == 3

        def never(body: bytes) -> None:
            raise ValueError("truncated image")

        with pytest.raises(FetchError, match=r"invalid content \(truncated image\) after 4 tries"):
            http.get(server.url + "blob.bin", validate=never)


def test_range_reads_reuse_one_kept_alive_connection(files):
    root, data = files
    with MirrorServer(root) as server:
        http = HttpClient(policy=FAST)
        for start in range(0, 300_000, 10_000):
            assert http.get(server.url + "blob.bin", byte_range=(start, start + 100)) == data[start : start + 100]
        assert server.requests == 30 and server.connections == 1


def test_download_from_a_server_without_range_support_starts_over(files, tmp_path):
    root, data = files
    with MirrorServer(root, ranges=False) as server:
        server.inject("blob", "drop", times=1)
        target = tmp_path / "blob.bin"
        assert HttpClient(policy=FAST).download(server.url + "blob.bin", target) == len(data)
        assert target.read_bytes() == data
        assert [status for _, _, status in server.log] == [200, 200]  # the Range retry got the whole file again


def test_download_keeps_a_partial_file_for_the_next_call(files, tmp_path):
    root, data = files
    target = tmp_path / "blob.bin"
    with MirrorServer(root) as server:
        server.inject("blob", "drop", times=2)
        with pytest.raises(FetchError, match="closed early"):
            HttpClient(policy=RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=1.0)).download(
                server.url + "blob.bin", target, keep_partial=True)  # fmt: skip
        part = tmp_path / "blob.bin.part"
        kept = part.stat().st_size
        assert kept == len(data) // 2 + (len(data) - len(data) // 2) // 2 and not target.exists()
        server.reset_counters()
        assert HttpClient(policy=FAST).download(server.url + "blob.bin", target, keep_partial=True) == len(data)
        assert target.read_bytes() == data and not part.exists()
        assert server.log == [["/blob.bin", f"bytes={kept}-", 206]] and server.bytes_sent == len(data) - kept
        # A partial file longer than the remote one (it changed): the server cannot serve the rest, start over.
        part.write_bytes(data + b"stale")
        server.reset_counters()
        assert HttpClient(policy=FAST).download(server.url + "blob.bin", target, keep_partial=True) == len(data)
        assert target.read_bytes() == data and [s for _, _, s in server.log] == [416, 200]
