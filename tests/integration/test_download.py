"""The downloader against the simulator's file host over real HTTP on 127.0.0.1."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batchrun.download import BATCH, Downloader, DownloadedFile, sha256_file, verify_file
from batchrun.errors import PermanentDownloadError, TransientDownloadError
from batchrun.retry import RetryPolicy

pytest.importorskip("batchrun.sim")
from batchrun.sim import Faults, Latency  # noqa: E402

T2V = "kling/kling-3.0/pro/text-to-video"
FAST = RetryPolicy(max_attempts=20, base=0.0, cap=0.0, max_elapsed=None, jitter=False)


def completed_job(sim: Any) -> str:
    """Submit one job straight to the simulator and finish it; returns its file URL."""
    with httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {sim.config.token}"}) as http:
        rid = http.post(f"/v1/models/{T2V}", json={"prompt": "x"}).json()["request_id"]
        sim.finish(rid)
        assert http.get(f"/v1/requests/{rid}/result").json()["status"] == "completed"
    return sim.file_url(rid)


def fetch(url: str, dest: Path, **kw: Any) -> DownloadedFile:
    kw.setdefault("retry", FAST)

    async def noop(_: float) -> None:
        return None

    async def main() -> DownloadedFile:
        async with Downloader(sleep=noop, **kw) as downloader:
            return await downloader.fetch(url, dest)

    return anyio.run(main)


@pytest.fixture
def manual_sim(make_simulator: Any) -> Any:
    return make_simulator(latency=Latency(kind="manual"))


def test_download_matches_served_file_and_sends_no_token(manual_sim: Any, tmp_path: Path) -> None:
    """A result file lands complete, with the sha256 the server served, and no credentials were sent."""
    url = completed_job(manual_sim)
    dest = tmp_path / "out" / "nested" / "clip.mp4"
    got = fetch(url, dest)
    assert got.path == dest and dest.stat().st_size == got.size > 0
    assert got.sha256 == manual_sim.served_files()[url] == sha256_file(dest)
    assert got.content_type and got.content_type.startswith("video/")
    assert not dest.with_name("clip.mp4.part").exists()
    assert verify_file(dest, got.size, got.sha256)
    assert not verify_file(dest, got.size + 1, got.sha256)
    assert manual_sim.stats().authorization_headers_on_files == 0


def test_truncated_download_is_resumed_with_range(manual_sim: Any, tmp_path: Path) -> None:
    """A cut-off transfer leaves a .part that the next attempt resumes with Range, ending byte-exact."""
    url = completed_job(manual_sim)
    dest = tmp_path / "clip.mp4"
    manual_sim.set_faults(Faults(truncated_download=1.0))
    with pytest.raises(TransientDownloadError, match="truncated|interrupted"):
        fetch(url, dest, retry=RetryPolicy(max_attempts=1))
    part = tmp_path / "clip.mp4.part"
    assert part.exists() and not dest.exists()
    kept = part.stat().st_size
    manual_sim.set_faults(Faults())
    got = fetch(url, dest)
    assert kept > 0 and manual_sim.stats().range_requests >= 1
    assert got.sha256 == manual_sim.served_files()[url] == sha256_file(dest)
    assert not part.exists()


def test_flaky_file_host_is_retried_within_one_fetch(make_simulator: Any, tmp_path: Path) -> None:
    """Truncations, resets and 5xx on the file host are retried (resuming) until the file is whole."""
    sim = make_simulator(latency=Latency(kind="manual"), seed=11)
    url = completed_job(sim)
    sim.set_faults(Faults(truncated_download=0.6, server_error=0.2, reset=0.1))
    got = fetch(url, tmp_path / "clip.mp4")
    assert got.sha256 == sim.served_files()[url]
    assert sim.stats().faults_injected.get("truncated_download", 0) > 0
    assert sim.stats().authorization_headers_on_files == 0


def test_complete_part_is_finished_without_downloading_again(manual_sim: Any, tmp_path: Path) -> None:
    """A crash after the last byte but before the rename is completed on resume (server answers 416)."""
    url = completed_job(manual_sim)
    first = fetch(url, tmp_path / "a.mp4")
    (tmp_path / "b.mp4.part").write_bytes((tmp_path / "a.mp4").read_bytes())
    second = fetch(url, tmp_path / "b.mp4")
    assert second.sha256 == first.sha256 and second.size == first.size


def test_expired_result_is_permanent_and_leaves_nothing(manual_sim: Any, tmp_path: Path) -> None:
    """A 404 file says 'expired or missing' at once and leaves no .part behind."""
    url = manual_sim.file_url("never-finished")
    dest = tmp_path / "x.mp4"
    dest.with_name("x.mp4.part").write_bytes(b"stale")
    with pytest.raises(PermanentDownloadError, match="expired or missing"):
        fetch(url, dest)
    assert not dest.exists() and not dest.with_name("x.mp4.part").exists()


def test_size_cap_aborts_and_deletes_the_part(manual_sim: Any, tmp_path: Path) -> None:
    """A file bigger than max_bytes is refused and the partial file removed."""
    url = completed_job(manual_sim)
    dest = tmp_path / "big.mp4"
    with pytest.raises(PermanentDownloadError, match="limit"):
        fetch(url, dest, max_bytes=1000)
    assert not dest.exists() and not dest.with_name("big.mp4.part").exists()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.mp4", "file:///etc/passwd", "https://127.0.0.1:99999/v.mp4",
                                 "http:///v.mp4"])
def test_urls_that_are_no_http_file_are_refused(url: str, tmp_path: Path) -> None:
    """Result URLs must be http(s) with a host and a possible port; nothing is fetched otherwise."""
    with pytest.raises(PermanentDownloadError):
        fetch(url, tmp_path / "out" / "a.mp4")
    assert not (tmp_path / "out").exists()


class _Redirector(BaseHTTPRequestHandler):
    target = ""
    seen_auth: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen_auth.append(self.headers.get("Authorization"))
        self.send_response(302)
        self.send_header("Location", type(self).target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def redirector() -> Iterator[type[_Redirector]]:
    handler = type("Redirector", (_Redirector,), {"seen_auth": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.base = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()


def test_redirect_to_another_host_carries_no_credentials(
    manual_sim: Any, redirector: Any, tmp_path: Path
) -> None:
    """A result URL that redirects to a CDN host is followed, and no Authorization reaches either host."""
    url = completed_job(manual_sim)
    redirector.target = url  # http://localhost:<port>/files/...: another host than 127.0.0.1
    got = fetch(f"{redirector.base}/r/clip.mp4", tmp_path / "clip.mp4")
    assert got.sha256 == manual_sim.served_files()[url]
    assert redirector.seen_auth == [None]
    assert manual_sim.stats().authorization_headers_on_files == 0


def test_redirect_loop_is_bounded(redirector: Any, tmp_path: Path) -> None:
    """An endless redirect chain stops after a few hops."""
    redirector.target = f"{redirector.base}/again"
    with pytest.raises(PermanentDownloadError, match="redirects"):
        fetch(f"{redirector.base}/r/clip.mp4", tmp_path / "clip.mp4")
    assert len(redirector.seen_auth) == 6


class _BigFile(BaseHTTPRequestHandler):
    """Serves ``body`` with Range support; the first ``cut_first`` answers stop after ``cut_at`` bytes."""

    body = b""
    cut_at = 0
    cut_first = 0
    announce = True  #: send Content-Length (otherwise the body ends when the connection closes)
    stall_at = 0  #: when set, stop sending after this many bytes until ``release`` is set
    release = threading.Event()
    ranges: list[str | None] = []
    content_type: str | None = None

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        cls = type(self)
        asked = self.headers.get("Range")
        cls.ranges.append(asked)
        start = int(asked.split("=")[1].rstrip("-")) if asked else 0
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(cls.body) - 1}/{len(cls.body)}")
        if cls.announce:
            self.send_header("Content-Length", str(len(cls.body) - start))
        if cls.content_type:
            self.send_header("Content-Type", cls.content_type)
        self.end_headers()
        end = len(cls.body)
        if cls.cut_first > 0:
            cls.cut_first -= 1
            end = cls.cut_at
        if cls.stall_at:
            self.wfile.write(cls.body[start:cls.stall_at])
            self.wfile.flush()
            cls.release.wait(30)
            start = cls.stall_at
        self.wfile.write(cls.body[start:end])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def big_file() -> Iterator[type[_BigFile]]:
    handler = type("BigFile", (_BigFile,), {"ranges": [], "release": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/big.mp4"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    handler.release.set()
    server.shutdown()
    server.server_close()


def test_large_file_cut_midway_keeps_every_byte_and_resumes(big_file: Any, tmp_path: Path) -> None:
    """A multi-MiB file (written and hashed off the event loop) cut after 3.5 MiB resumes from exactly there."""
    import hashlib
    import random

    assert BATCH < 3 * 2**20, "the cut must come after at least one batch went through the threads"
    big_file.body = random.Random(5).randbytes(5 * 2**20 + 12345)
    big_file.cut_at, big_file.cut_first = 3 * 2**20 + 2**19, 1
    dest = tmp_path / "big.mp4"
    with pytest.raises(TransientDownloadError, match="truncated|interrupted"):
        fetch(big_file.url, dest, retry=RetryPolicy(max_attempts=1))
    part = tmp_path / "big.mp4.part"
    assert part.read_bytes() == big_file.body[: big_file.cut_at]  # every received byte reached the disk
    got = fetch(big_file.url, dest)
    assert big_file.ranges == [None, f"bytes={big_file.cut_at}-"]
    assert got.size == len(big_file.body) and dest.read_bytes() == big_file.body
    assert got.sha256 == hashlib.sha256(big_file.body).hexdigest()
    assert not part.exists()


def test_large_file_over_the_size_cap_leaves_nothing(big_file: Any, tmp_path: Path) -> None:
    """The size cap holds while streaming a large unannounced body: it stops and no .part is left."""
    big_file.body, big_file.announce = bytes(4 * 2**20), False
    folder = tmp_path / "out"
    with pytest.raises(PermanentDownloadError, match="exceeds the 3145728-byte limit"):
        fetch(big_file.url, folder / "big.mp4", max_bytes=3 * 2**20)
    assert list(folder.iterdir()) == []


def test_a_disk_error_while_the_server_stalls_surfaces_as_itself(big_file: Any, tmp_path: Path) -> None:
    """Disk full while writing a large file, the server silent mid-body: the ENOSPC comes out as itself."""
    big_file.body = bytes(2 * BATCH)
    big_file.stall_at = BATCH + 2**18  # one batch and a bit (so the threads have work), then silence
    dest = tmp_path / "big.mp4"
    (tmp_path / "big.mp4.part").symlink_to("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(OSError) as caught:
        fetch(big_file.url, dest, timeout=3.0, retry=RetryPolicy(max_attempts=1))  # not a read timeout
    assert caught.value.errno == errno.ENOSPC
    assert not dest.exists()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<!DOCTYPE html><html><body>Sign in</body></html>",
        b"\xef\xbb\xbf\n  <HTML>\n<p>moved</p>",
        b"<!-- generated by cdn -->\n<!DOCTYPE html><html>",
        b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN"><html>',
        b"<meta charset=utf-8><title>Login</title>",
    ],
)
def test_a_2xx_that_holds_no_file_is_refused_and_leaves_nothing(big_file: Any, tmp_path: Path, body: bytes) -> None:
    """An empty body or an HTML page (even without a text/html type) is never saved as the video."""
    from batchrun.errors import NotAFileError

    big_file.body = body
    with pytest.raises(NotAFileError, match="empty body|web page"):
        fetch(big_file.url, tmp_path / "out" / "clip.mp4")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_file_that_merely_contains_html_later_is_kept(big_file: Any, tmp_path: Path) -> None:
    """Only the start of the body decides: a video that happens to hold `<html` bytes is fine."""
    big_file.body = b"\x00\x00\x00\x18ftypmp42" + b"<html>" * 100
    got = fetch(big_file.url, tmp_path / "clip.mp4")
    assert got.size == len(big_file.body) and (tmp_path / "clip.mp4").read_bytes() == big_file.body


def test_a_web_page_cut_off_and_resumed_is_still_refused(big_file: Any, tmp_path: Path) -> None:
    """The first bytes of the file decide, even when they came with an earlier, broken answer."""
    from batchrun.errors import NotAFileError

    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>" + b"x" * 4000 + b"</body></html>"
    big_file.body, big_file.cut_first, big_file.cut_at = page, 1, 100
    with pytest.raises(NotAFileError, match="web page"):
        fetch(big_file.url, tmp_path / "out" / "clip.mp4")
    assert big_file.ranges == [None, "bytes=100-"]
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("cut", [0, 100])
def test_a_video_mislabelled_text_html_is_kept(big_file: Any, tmp_path: Path, cut: int) -> None:
    """The body decides, not the label: an MP4 served as text/html is saved (whole, or resumed)."""
    big_file.body = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20
    big_file.content_type, big_file.cut_first, big_file.cut_at = "text/html; charset=utf-8", int(bool(cut)), cut
    got = fetch(big_file.url, tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").read_bytes() == big_file.body and got.size == len(big_file.body)


@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"error": "file not ready"}', "application/json"),
    (b'<?xml version="1.0"?><Error><Code>NoSuchKey</Code></Error>', "application/xml"),
    (b"not found", "text/plain; charset=utf-8"),
])
def test_an_error_document_sent_with_200_is_not_saved_as_the_video(big_file: Any, tmp_path: Path, body: bytes,
                                                                   content_type: str) -> None:
    """A 200 carrying JSON, S3's XML <Error> or plain text is not the video: refused like a web page
    (the job stays downloading, fetched again later), never a 26-byte `.mp4` recorded as done."""
    from batchrun.errors import NotAFileError

    big_file.body, big_file.content_type = body, content_type
    with pytest.raises(NotAFileError, match="error document"):
        fetch(big_file.url, tmp_path / "out" / "clip.mp4")
    assert list((tmp_path / "out").iterdir()) == []


def test_text_labelled_html_that_is_no_media_file_is_refused(big_file: Any, tmp_path: Path) -> None:
    """A text/html answer without HTML tags (a bare 'Access denied') is still not a video."""
    from batchrun.errors import NotAFileError

    big_file.body, big_file.content_type = b"Access denied. Please sign in again.", "text/html"
    with pytest.raises(NotAFileError, match="web page"):
        fetch(big_file.url, tmp_path / "out" / "clip.mp4")
    assert list((tmp_path / "out").iterdir()) == []
