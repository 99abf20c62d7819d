"""The result files: one shipped MP4 clip, made distinct per job by a trailing ``free`` box.

An MP4 is a sequence of boxes and players skip ``free`` boxes, so ``clip + free(request_id)``
is still a valid video while every job's bytes (and sha256) differ. Nothing per job is kept in
memory beyond the short trailer, so thousands of results cost a few kilobytes.
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache
from importlib.resources import files

FILE_NAME = "output.mp4"
IMAGE_NAME = "output.png"  #: an output's image (a thumbnail): served with bytes of its own
CONTENT_TYPE = "video/mp4"


@lru_cache(maxsize=1)
def clip() -> bytes:
    """The shipped clip (2 s, 320x180, H.264, moov first)."""
    return (files("batchrun.sim") / "data" / "clip.mp4").read_bytes()


@lru_cache(maxsize=1)
def _clip_hash() -> "hashlib._Hash":
    return hashlib.sha256(clip())


def trailer(request_id: str) -> bytes:
    """An MP4 ``free`` box naming the job."""
    payload = f"batchrun-sim request_id={request_id}\n".encode()
    return struct.pack(">I4s", 8 + len(payload), b"free") + payload


class ResultFile:
    """The bytes of one job's result: the shared clip followed by its trailer."""

    __slots__ = ("tail", "size", "sha256", "etag")

    def __init__(self, request_id: str) -> None:
        self.tail = trailer(request_id)
        self.size = len(clip()) + len(self.tail)
        digest = _clip_hash().copy()
        digest.update(self.tail)
        self.sha256 = digest.hexdigest()
        self.etag = f'"{self.sha256[:32]}"'

    def chunks(self, start: int, end: int) -> list[bytes | memoryview]:
        """The bytes ``[start, end)`` as at most two buffers (no copy of the clip)."""
        body = clip()
        head = len(body)
        out: list[bytes | memoryview] = []
        if start < head:
            out.append(memoryview(body)[start : min(end, head)])
        if end > head:
            out.append(self.tail[max(start - head, 0) : end - head])
        return out

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        end = self.size if end is None else end
        return b"".join(bytes(c) for c in self.chunks(start, end))


def path_for(request_id: str) -> str:
    return f"/files/{request_id}/{FILE_NAME}"
