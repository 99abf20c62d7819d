"""Fetching result files: streamed to ``<dest>.part``, verified, then moved into place.

A ``Downloader`` owns its own httpx client, separate from the API client: it never sends an
``Authorization`` header (result files live on other hosts), and it follows at most
``MAX_REDIRECTS`` redirects itself, checking every hop against the same URL rules.

``fetch(url, dest)``:

- refuses (``PermanentDownloadError``) any URL that is not ``https``, except ``http`` to a
  loopback host (127.0.0.0/8, ::1, ``localhost``), which the simulator uses;
- streams to ``<dest>.part`` block by block as the socket delivers them, computing sha256
  (memory stays flat; bytes received before a break are kept for the resume);
- resumes a ``.part`` left by an earlier attempt with ``Range: bytes=<size>-`` (re-hashing the
  part first), but only a part of the same ``source`` (the caller's name for the file: a job's
  request and file number), which ``<dest>.part.json`` records with the file's validators (a
  strong ``ETag``, ``Last-Modified``): a part of anything else is dropped, a validator is sent as
  ``If-Range``, and an answer whose validator of the same kind differs (a host that ignores
  ``If-Range``) starts over, so bytes of two files are never spliced (the record is written only
  once the old bytes are durably gone); a ``200`` instead of ``206`` (or a ``Content-Range``
  that does not fit) starts over;
  a ``206`` is taken whenever its ``Content-Range`` starts at the bytes already held (0 when no
  Range was sent; a 206 to a plain GET without ``Content-Range`` is read like a 200), and a 206
  to a plain GET that starts elsewhere is refused (asking again would get the same answer); a
  compressed ``206`` (``Content-Encoding`` other than identity) to a resume is a slice of the
  compressed file, so the part is dropped and the whole file asked again;
- honours ``Retry-After`` on 429 and 5xx answers (through the retry policy, capped);
- checks the final size against ``Content-Length`` / the ``Content-Range`` total: a short file is
  a ``TransientDownloadError`` (retried, resuming);
- gives up with ``PermanentDownloadError`` past ``max_bytes`` and on 4xx (404/410: "result
  expired or missing");
- refuses (``NotAFileError``) a 2xx that holds no file: an empty body, or a web page (a body
  that starts like an HTML document, or one declared ``text/html`` that does not start like a
  binary file), which a CDN or a login wall may send with HTTP 200 in place of the video; a
  video merely mislabelled ``text/html`` is kept;
- fsyncs the file, ``os.replace``\\ s it onto ``dest`` and fsyncs the directory.

A permanent failure never leaves a ``.part`` (or its ``.part.json``) behind. A transient failure that outlives the retry
policy leaves the ``.part`` in place on purpose, so the next ``fetch`` of the same ``dest``
resumes it. Two concurrent fetches to the same ``dest`` are the caller's mistake.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from batchrun import __version__
from batchrun.api.client import NoCookieJar
from batchrun.api.responses import one_line, parse_retry_after
from batchrun.errors import MissingFileError, NotAFileError, PermanentDownloadError, TransientDownloadError
from batchrun.retry import RetryPolicy

CHUNK = 1024 * 1024
BATCH = 2 * 1024 * 1024  #: bytes gathered before a write-and-hash hand-off to a thread
BATCHES_AHEAD = 3  #: batches that may wait for each worker thread (memory: up to about 14 MiB per big download)
MAX_REDIRECTS = 5
USER_AGENT = f"batchrun/{__version__}"
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_CONTENT_RANGE_TOTAL = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.I)


@dataclass(frozen=True)
class DownloadedFile:
    """A result file on disk, verified."""

    path: Path
    size: int
    sha256: str
    url: str  #: the URL asked for (before redirects)
    content_type: str | None


def check_url(url: str | httpx.URL) -> httpx.URL:
    """The URL, when batchrun may fetch it: http or https, with a host and a possible port. (No
    credentials ever go with a download, so plain http risks no secret.)"""
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        raise PermanentDownloadError(f"not a valid URL: {str(url)[:200]}", url=str(url)) from error
    if parsed.scheme not in ("http", "https"):
        raise PermanentDownloadError(f"refusing to download {parsed.scheme}:// URLs (only http and https): "
                                     f"{str(url)[:200]}", url=str(url))
    if not parsed.host:
        raise PermanentDownloadError(f"URL has no host: {str(url)[:200]}", url=str(url))
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise PermanentDownloadError(f"URL has an impossible port ({parsed.port}): {str(url)[:200]}", url=str(url))
    return parsed


def sha256_file(path: Path | str) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path | str, size: int | None, sha256: str | None) -> bool:
    """True when ``path`` is a regular file of ``size`` bytes whose sha256 is ``sha256``."""
    path = Path(path)
    try:
        if not path.is_file():
            return False
        if size is not None and path.stat().st_size != size:
            return False
        return sha256 is None or sha256_file(path) == sha256.lower()
    except OSError:
        return False


#: how a web page begins (after a BOM, blanks, an XML declaration or comments); no video or
#: image format begins like this
_HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,200}\?>\s*)?(?:<!--.{0,400}?-->\s*)*"
    rb"(?:<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]|<meta[\s>]|<title[\s>])",
    re.I | re.S,
)


def _is_web_page_type(content_type: str | None) -> bool:
    """Whether the answer is labelled as a document (a web page, JSON, XML, text), which a file
    host sends in place of the file: `{"error": "not ready"}`, S3's `<Error>...</Error>`."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return (media.startswith("text/") or media in ("application/json", "application/xml")
            or media.endswith(("+json", "+xml")))


def _is_encoded(response: httpx.Response) -> bool:
    """Whether the body is compressed on the wire (httpx decodes it, so sizes and offsets differ)."""
    return response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")


def _head(blocks: list[bytes], size: int = 512) -> bytes:
    """The first ``size`` bytes of ``blocks``, without joining them all."""
    head = b""
    for block in blocks:
        head += block[: size - len(head)]
        if len(head) >= size:
            break
    return head


#: how common video and image files begin (besides the NUL bytes most of them hold early on)
_MEDIA_STARTS = (b"\x1a\x45\xdf\xa3", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"OggS", b"FLV")


def _looks_like_media(head: bytes) -> bool:
    """Whether the first bytes are those of a binary file: a text page never holds a NUL byte."""
    return b"\0" in head or head.startswith(_MEDIA_STARTS) or head[4:8] == b"ftyp"


def _refuse_blank(size: int, head: bytes, part: Path, url: str, *, page_type: bool = False) -> None:
    """Raise NotAFileError (deleting the part) when what arrived is empty or a web page: a body
    that starts like HTML, or one declared ``text/html`` that does not start like a binary file
    (a video mislabelled ``text/html`` by its host is kept)."""
    if size == 0 or _HTML_START.match(head) or (page_type and not _looks_like_media(head)):
        _drop_part(part)
        raise NotAFileError(
            "file server sent an empty body, not the file" if size == 0
            else "file server sent a web page (HTML), not the file" if _HTML_START.match(head)
            else f"file server sent a web page or error document ({head[:60].decode('utf-8', 'replace').strip()!r}), "
            "not the file",
            url=url,
        )


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _origin_path(part: Path) -> Path:
    """Where a part's source and validator are recorded (``.part.json``: no output can be named
    that, ``.part`` being reserved)."""
    return part.with_name(part.name + ".json")


def _drop_part(part: Path) -> None:
    _unlink(part)
    _unlink(_origin_path(part))


def _recorded_origin(part: Path) -> dict[str, Any] | None:
    """What ``_record_origin`` wrote for this part, or None (none, unreadable, or not ours)."""
    try:
        origin = json.loads(_origin_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return origin if isinstance(origin, dict) and isinstance(origin.get("source"), str) else None


def _record_origin(part: Path, source: str, response: httpx.Response, *, old_bytes: bool) -> None:
    """Record what a fresh ``part`` is about to hold. ``old_bytes`` held there are removed, and
    the removal made durable, first: a crash never leaves this record beside another file's bytes
    (a torn record does not parse, and its part is dropped)."""
    if old_bytes:
        _unlink(part)
        fsync_dir(part.parent)
    etag, modified = _validators(response)
    _origin_path(part).write_text(json.dumps({"source": source, "etag": etag, "last_modified": modified}),
                                  encoding="utf-8")


def _validators(response: httpx.Response) -> tuple[str | None, str | None]:
    """The answer's strong ETag (a weak one cannot be used with If-Range) and Last-Modified."""
    etag = response.headers.get("etag", "").strip()
    return (etag if etag.startswith('"') else None), (response.headers.get("last-modified") or None)


def _if_range(origin: dict[str, Any]) -> str | None:
    """The validator to send with a resume: the ETag, else the date."""
    for name in ("etag", "last_modified"):
        value = origin.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _another_version(origin: dict[str, Any] | None, response: httpx.Response) -> bool:
    """Whether the answer is of another version of the file than the part: validators of the same
    kind that differ (an ETag against an ETag, else a date against a date; nothing to compare is
    no evidence)."""
    if not origin:
        return False
    etag, modified = _validators(response)
    if etag and origin.get("etag"):
        return etag != origin["etag"]
    return bool(modified and origin.get("last_modified") and modified != origin["last_modified"])


def default_source(url: str) -> str:
    """A file's name when the caller gives none: its URL without the query (a signature)."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` survive a power loss (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _hash_existing(path: Path) -> tuple[int, Any, bytes]:
    """The size, the running sha256 and the first bytes of a partial download."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
            head = head or block[:512]
            size += len(block)
    return size, digest, head


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


class Downloader:
    """Fetches result files (without credentials, except from the API's own origin); use as
    ``async with Downloader() as d``."""

    def __init__(
        self,
        *,
        max_bytes: int = 2 * 1024**3,
        timeout: httpx.Timeout | float = httpx.Timeout(60.0, connect=15.0),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 8,
        rng: random.Random | None = None,
        api_credentials: tuple[str, str] | None = None,
    ) -> None:
        """``api_credentials`` (base URL, token): a file served by the API's own origin (same
        scheme, host and port) is fetched with the token, as every request to the API is; no
        other host, nor a redirect away from that origin, ever gets it."""
        self.max_bytes = max_bytes
        self._api_origin = _origin(httpx.URL(api_credentials[0])) if api_credentials else None
        self._api_auth = {"Authorization": f"Bearer {api_credentials[1]}"} if api_credentials else {}
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng
        self.request_count = 0
        self._http = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,  # followed by hand so every hop is checked
            transport=transport,
            trust_env=False,
            cookies=NoCookieJar(),  # a file host can never make later fetches carry state
        )

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch(self, url: str, dest: Path | str, *, source: str | None = None) -> DownloadedFile:
        """Download ``url`` to ``dest`` atomically, resuming and retrying transient failures.
        ``source`` names the file whatever its URL (a refreshed signature is the same file): a
        ``.part`` of another source is never resumed. Default: the URL without its query."""
        dest = Path(dest)
        part = _part_path(dest)
        try:
            check_url(url)
            source = source if source is not None else default_source(url)
            async for trying in self.retry.retrying(sleep=self._sleep, rng=self._rng):
                with trying:
                    return await self._attempt(url, dest, part, source)
        except PermanentDownloadError:
            _drop_part(part)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _open(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """Send a GET, following redirects by hand; the caller closes the answer."""
        current = check_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            self.request_count += 1
            hop_headers = {**headers, **self._api_auth} if _origin(current) == self._api_origin else headers
            request = self._http.build_request("GET", current, headers=hop_headers)
            response = await self._http.send(request, stream=True)
            if not response.is_redirect:
                return response
            location = response.headers.get("location")
            await response.aclose()
            if not location:
                raise PermanentDownloadError(f"redirect without Location from {current.host}", url=url)
            current = check_url(current.join(location))
        raise PermanentDownloadError(f"more than {MAX_REDIRECTS} redirects", url=url)

    async def _attempt(self, url: str, dest: Path, part: Path, source: str) -> DownloadedFile:
        dest.parent.mkdir(parents=True, exist_ok=True)
        existing = part.stat().st_size if part.exists() else 0
        origin = _recorded_origin(part) if existing else None
        if existing and (origin is None or origin["source"] != source):
            _drop_part(part)  # another file's bytes (another job, revision or campaign): never spliced
            fsync_dir(part.parent)  # gone for good before a record of this download is written
            existing, origin = 0, None
        headers = {"Range": f"bytes={existing}-"} if existing else {}
        validator = _if_range(origin) if origin else None
        if existing and validator:
            headers["If-Range"] = validator  # the rest only if the file is still the one we hold
        try:
            response = await self._open(url, headers)
            try:
                if response.status_code == 416 and existing:
                    total = _CONTENT_RANGE_TOTAL.match(response.headers.get("content-range", ""))
                    if total and int(total.group(1)) == existing and not _another_version(origin, response):
                        # an earlier attempt got every byte but stopped before the rename
                        return await self._finish_complete_part(response, url, dest, part)
                if existing and (response.status_code == 416 or (response.status_code == 206 and _is_encoded(response))):
                    # the part is no prefix the server recognises, or the answer is a slice of the
                    # compressed file (RFC 9110, 14.1.2), which does not continue the decoded
                    # bytes held: start again from nothing
                    await response.aclose()
                    _drop_part(part)
                    existing = 0
                    response = await self._open(url, {})
                return await self._receive(response, url, dest, part, existing, source, origin)
            finally:
                await response.aclose()
        except httpx.TransportError as error:
            if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
                raise PermanentDownloadError(f"cannot fetch {url[:200]}: {error}", url=url) from error
            raise TransientDownloadError(
                f"download interrupted ({type(error).__name__}: {error})", url=url
            ) from error

    async def _finish_complete_part(
        self, response: httpx.Response, url: str, dest: Path, part: Path
    ) -> DownloadedFile:
        size, digest, head = await anyio.to_thread.run_sync(_hash_existing, part)
        if size > self.max_bytes:
            _drop_part(part)
            raise PermanentDownloadError(f"file exceeds the {self.max_bytes}-byte limit", url=url)
        _refuse_blank(size, head, part, url)
        await anyio.to_thread.run_sync(_fsync_file, part)
        os.replace(part, dest)
        _unlink(_origin_path(part))
        await anyio.to_thread.run_sync(fsync_dir, dest.parent)
        return DownloadedFile(path=dest, size=size, sha256=digest.hexdigest(), url=url, content_type=None)

    async def _receive(
        self, response: httpx.Response, url: str, dest: Path, part: Path, existing: int, source: str,
        origin: dict[str, Any] | None = None,
    ) -> DownloadedFile:
        status = response.status_code
        if status in (404, 410):
            raise MissingFileError(f"result expired or missing (HTTP {status})", url=url)
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise TransientDownloadError(f"file server answered HTTP {status}", url=url, retry_after=retry_after)
        if 400 <= status < 500:
            raise PermanentDownloadError(f"file server refused the download (HTTP {status})", url=url)
        if status not in (200, 206):
            raise PermanentDownloadError(f"unexpected answer to a download (HTTP {status})", url=url)

        page_type = _is_web_page_type(response.headers.get("content-type"))
        encoded = _is_encoded(response)
        expected: int | None = None
        range_end: int | None = None
        start = 0
        content_range = response.headers.get("content-range")
        if status == 206 and (existing or content_range):
            match = _CONTENT_RANGE.match(content_range or "")
            if not match or int(match.group(1)) != existing:
                if not existing:  # a plain GET answered with a slice: asking again gets the same
                    raise PermanentDownloadError(
                        f"file server sent only part of the file ({one_line(content_range)}) to a plain GET",
                        url=url,
                    )
                # a range we did not ask for: throw the part away and let the retry start over
                _drop_part(part)
                raise TransientDownloadError("server sent an unexpected range; starting over", url=url)
            if existing and _another_version(origin, response):
                # a server that ignored If-Range: the rest of another version of the file
                _drop_part(part)
                raise TransientDownloadError("the file changed on the server since the partial download; "
                                             "starting over", url=url)
            start = existing
            expected = None if match.group(3) == "*" else int(match.group(3))
            if expected is None:  # total unknown: at least the announced slice must arrive
                range_end = int(match.group(2)) + 1
        else:
            length = response.headers.get("content-length")
            if length is not None and length.strip().isdigit() and not encoded:
                expected = int(length)
        if expected is not None and expected > self.max_bytes:
            _drop_part(part)
            raise PermanentDownloadError(
                f"file is {expected} bytes, over the {self.max_bytes}-byte limit", url=url
            )

        if start:
            size, digest, part_head = await anyio.to_thread.run_sync(_hash_existing, part)
            if size != start:  # the part changed under us
                _drop_part(part)
                raise TransientDownloadError("partial file changed; starting over", url=url)
            mode = "ab"
        else:
            size, digest = 0, hashlib.sha256()
            mode = "wb"
            _record_origin(part, source, response, old_bytes=existing > 0)

        size, head = await self._stream_to_part(response, url, part, mode, size, digest)
        if start:
            head = part_head  # the file's first bytes came with an earlier answer
        if expected is None and range_end is not None and size < range_end:
            raise TransientDownloadError(f"truncated download: got {size} of {range_end} bytes", url=url)
        if expected is not None and size > expected:
            _drop_part(part)
            raise TransientDownloadError(f"got {size} bytes, more than the {expected} announced", url=url)
        if expected is not None and size != expected:
            raise TransientDownloadError(f"truncated download: got {size} of {expected} bytes", url=url)
        _refuse_blank(size, head, part, url, page_type=page_type)
        os.replace(part, dest)
        _unlink(_origin_path(part))
        await anyio.to_thread.run_sync(fsync_dir, dest.parent)
        return DownloadedFile(
            path=dest,
            size=size,
            sha256=digest.hexdigest(),
            url=url,
            content_type=response.headers.get("content-type"),
        )

    async def _stream_to_part(
        self, response: httpx.Response, url: str, part: Path, mode: str, size: int, digest: Any
    ) -> tuple[int, bytes]:
        """Append the answer's body to ``part``, hashing it; returns the part's size and the first
        bytes of this answer's body (to tell a web page from a file).

        Blocks are gathered into batches of about ``BATCH`` bytes. A body that fits in one batch
        (a typical clip) is written and hashed right here. A larger one goes to two worker
        threads, one writing each batch and one hashing it (both drop the GIL), while the event
        loop keeps receiving: a big download neither stalls the other jobs' polls nor waits for
        its own hashing, and on a CPU without SHA instructions the hash (about 350 MB/s) no longer
        queues behind the writes. At most ``BATCHES_AHEAD`` batches wait for each thread, so
        memory stays flat. Whatever the path, a connection break first writes every block
        received, so the resume loses nothing, and errors propagate as themselves. (A
        cancellation, a second Ctrl-C, may drop the last few MiB received: the ``.part`` stays a
        true prefix and the resume fetches them again.)
        """
        body = response.aiter_bytes()  # no chunk_size: blocks as the socket delivers them
        failures: list[Exception] = []
        total = size

        async def gather(into: list[bytes]) -> bool:
            """Add blocks to ``into`` until it holds a batch; False when the body ended (or broke)."""
            nonlocal total
            gathered = 0
            try:
                async for block in body:
                    total += len(block)
                    if total > self.max_bytes:
                        raise PermanentDownloadError(f"file exceeds the {self.max_bytes}-byte limit", url=url)
                    into.append(block)
                    gathered += len(block)
                    if gathered >= BATCH:
                        return True
            except Exception as error:  # re-raised by the caller, outside any task group
                failures.append(error)
                if isinstance(error, PermanentDownloadError):
                    into.clear()  # the part is deleted anyway
            return False

        with open(part, mode) as handle:
            first: list[bytes] = []
            filled = await gather(first)
            head = _head(first)
            if filled:
                await self._write_in_threads(b"".join(first), gather, handle.write, digest.update, failures)
            elif first:
                batch = b"".join(first)
                handle.write(batch)
                digest.update(batch)
            if not failures:
                handle.flush()
                await anyio.to_thread.run_sync(os.fsync, handle.fileno())
        if failures:
            if any(isinstance(failure, PermanentDownloadError) for failure in failures):
                _drop_part(part)
            raise failures[0]
        return total, head

    @staticmethod
    async def _write_in_threads(
        first: bytes,
        gather: Callable[[list[bytes]], Awaitable[bool]],
        write: Callable[[bytes], Any],
        hash: Callable[[bytes], Any],
        failures: list[Exception],
    ) -> None:
        """Hand ``first`` and every later batch ``gather`` fills to ``write`` and to ``hash``.

        Each runs in a worker thread of its own, batch after batch in order; the join of a batch
        happens here (a memcpy), so each thread takes the GIL about twice per batch.
        """
        to_disk, disk_batches = anyio.create_memory_object_stream[bytes](BATCHES_AHEAD)
        to_digest, digest_batches = anyio.create_memory_object_stream[bytes](BATCHES_AHEAD)

        async def consume(batches: anyio.abc.ObjectReceiveStream[bytes], work: Callable[[bytes], Any]) -> None:
            async with batches:
                try:
                    async for batch in batches:
                        await anyio.to_thread.run_sync(work, batch)
                except Exception as error:  # disk full, ...: stop receiving now, not at the next batch
                    failures.append(error)
                    tasks.cancel_scope.cancel()

        async def produce() -> None:
            async with to_disk, to_digest:
                batch, more = first, True
                while batch:
                    try:
                        await to_disk.send(batch)
                        await to_digest.send(batch)
                    except anyio.BrokenResourceError:
                        return  # a consumer stopped; its error is in failures
                    blocks: list[bytes] = []
                    if more:
                        more = await gather(blocks)
                    batch = b"".join(blocks)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume, disk_batches, write)
            tasks.start_soon(consume, digest_batches, hash)
            await produce()
