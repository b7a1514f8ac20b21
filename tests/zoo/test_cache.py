"""The weights cache downloads from a loopback server: checks, resume, redirects, servers without Range, offline."""

from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest
from weights_server import WeightsServer
from zoo_files import DATA, PATH, entry_for

from maskrcnn.errors import UserError
from maskrcnn.zoo.cache import cache_path, fetch

def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/{PATH}"


def test_download_is_checked_kept_and_not_repeated(server, http, home):
    entry = entry_for(server.url + PATH)
    path = fetch(entry, home=home, http=http, progress=False)
    assert path == home / "weights" / "w-1234.pth" and path.read_bytes() == DATA
    assert not path.with_name("w-1234.pth.part").exists()
    assert server.ranges_asked == [None]  # one plain GET

    assert fetch(entry, home=home, http=http, progress=False) == path
    assert server.ranges_asked == [None]  # cached and already checked: no request, no hashing needed


def test_redirects_are_followed(http, home):
    with WeightsServer({PATH: DATA}, redirects={"old/w-1234.pth": "/" + PATH}) as server:
        path = fetch(entry_for(server.url + "old/w-1234.pth"), home=home, http=http, progress=False)
    assert path.name == "w-1234.pth" and path.read_bytes() == DATA


def test_a_connection_dropped_mid_file_is_resumed(server, http, home):
    server.drop_next(1, after=100_000)
    path = fetch(entry_for(server.url + PATH), home=home, http=http, progress=False)
    assert path.read_bytes() == DATA
    assert server.ranges_asked == [None, "bytes=100000-"]  # asked again, from where the file stood
    assert server.bytes_sent == len(DATA)


def test_a_download_stopped_earlier_continues_from_its_part_file(server, http, home):
    entry = entry_for(server.url + PATH)
    part = cache_path(entry, home).with_name("w-1234.pth.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA[:100_000])
    path = fetch(entry, home=home, http=http, progress=False)
    assert path.read_bytes() == DATA and not part.exists()
    assert server.ranges_asked == ["bytes=100000-"]
    assert server.bytes_sent == len(DATA) - 100_000


def test_giving_up_names_url_and_path_and_keeps_what_arrived(server, http, home):
    entry = entry_for(server.url + PATH)
    server.drop_next(3, after=1000)  # every one of the client's 3 tries breaks after 1000 bytes
    with pytest.raises(UserError) as e:
        fetch(entry, home=home, http=http, progress=False)
    path = cache_path(entry, home)
    assert entry.url in str(e.value) and f"put the file at {path}" in str(e.value)
    part = path.with_name("w-1234.pth.part")
    kept = part.read_bytes()
    assert 0 < len(kept) < len(DATA) and DATA.startswith(kept) and not path.exists()

    assert fetch(entry, home=home, http=http, progress=False).read_bytes() == DATA  # the next run goes on
    assert server.ranges_asked[-1] == f"bytes={len(kept)}-"  # from where the last run stopped


def test_a_server_without_range_sends_the_whole_file(http, home):
    with WeightsServer({PATH: DATA}, ranges=False) as server:
        path = fetch(entry_for(server.url + PATH), home=home, http=http, progress=False)
        assert path.read_bytes() == DATA
        assert server.ranges_asked == [None]


@pytest.mark.parametrize(
    "checks, says",
    [
        ({"sha256_prefix": "00000000"}, "does not start with 00000000 as the file name says"),
        ({"md5_prefix": "000000"}, "MD5"),
        ({"sha256": "0" * 64, "sha256_source": "a test"}, "as recorded from a test"),
    ],
)
def test_a_file_failing_its_check_is_deleted_and_named(server, http, home, checks, says):
    entry = entry_for(server.url + PATH, **checks)
    with pytest.raises(UserError) as e:
        fetch(entry, home=home, http=http, progress=False)
    path = cache_path(entry, home)
    assert f"{path} failed its checksum check and was deleted" in str(e.value) and says in str(e.value)
    assert not any(path.parent.glob("w-1234.pth*[!k]")), "no file, part or stamp is left (the lock file may stay)"


def test_every_recorded_digest_is_checked(server, http, home):
    digests = {"sha256": hashlib.sha256(DATA).hexdigest(), "sha256_source": "a test",
               "md5_prefix": hashlib.md5(DATA).hexdigest()[:6]}  # fmt: skip
    assert fetch(entry_for(server.url + PATH, **digests), home=home, http=http, progress=False).read_bytes() == DATA


def test_a_file_put_in_place_by_hand_is_checked_on_first_use(http, home):
    entry = entry_for(dead_url())
    path = cache_path(entry, home)
    path.parent.mkdir(parents=True)
    path.write_bytes(DATA[:-1] + b"\0")
    with pytest.raises(UserError, match="failed its checksum check and was deleted"):
        fetch(entry, home=home, http=http, progress=False)
    assert not path.exists()
    path.write_bytes(DATA)
    assert fetch(entry, home=home, http=http, progress=False) == path  # checked, and no network needed


def test_a_file_changed_after_its_check_is_checked_again(server, http, home):
    entry = entry_for(server.url + PATH)
    path = fetch(entry, home=home, http=http, progress=False)
    path.write_bytes(bytes(len(DATA)))
    later = time.time() + 10
    os.utime(path, (later, later))
    with pytest.raises(UserError, match="failed its checksum check"):
        fetch(entry, home=home, http=http, progress=False)


def test_offline_the_error_names_the_url_and_where_to_put_the_file(http, home):
    entry = entry_for(dead_url())
    started = time.monotonic()
    with pytest.raises(UserError) as e:
        fetch(entry, home=home, http=http, progress=False)
    message = str(e.value)
    assert message.startswith(f"cannot download test-weights from {entry.url}: connection to 127.0.0.1")
    assert f"put the file at {cache_path(entry, home)}" in message and "\n" not in message
    assert time.monotonic() - started < 5


def test_a_cache_that_cannot_be_written_is_named(server, http, tmp_path):
    home = tmp_path / "home"
    home.write_text("a file where the cache folder should be")
    with pytest.raises(UserError, match=f"cannot write the weights cache at {home / 'weights'}: .*MASKRCNN_HOME moves it"):
        fetch(entry_for(server.url + PATH), home=home, http=http, progress=False)
