"""Where a job's files go, and the JSON sidecar written beside each video.

Small file-system helpers the pool calls around the downloader. Nothing here touches the
network or the database: the caller passes in what the store knows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from batchrun.domain import Job

SIDECAR_SUFFIX = ".json"


#: what a video file's name may end with, and what marks a URL as an image
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic"})


def destinations(output_dir: Path, output_name: str, urls: Sequence[str]) -> list[Path]:
    """One destination per result URL: the job's file name, then ``name~2.ext``, ``name~3.ext``...

    ``~`` cannot appear in an id, so an extra file never takes another job's default name. Extra
    files keep the extension of their URL when it has one (an image next to a video). An output
    that holds no video (its first URL is an image) keeps the image's extension too, so a picture
    is never saved under a video's name.
    """
    primary = output_dir / output_name
    if urls and is_image_url(urls[0]) and primary.suffix.lower() in VIDEO_SUFFIXES:
        primary = primary.with_suffix(_url_suffix(urls[0]) or primary.suffix)
    paths = [primary]
    for index, url in enumerate(urls[1:], start=2):
        suffix = _url_suffix(url) or primary.suffix
        paths.append(primary.with_name(f"{primary.stem}~{index}{suffix}"))
    return paths


def is_image_url(url: str) -> bool:
    """Whether the URL's path names an image file."""
    return (_url_suffix(url) or "").lower() in IMAGE_SUFFIXES


def _url_suffix(url: str) -> str | None:
    """The extension of the URL's path, when it is a plausible one."""
    suffix = PurePosixPath(urlsplit(url).path).suffix
    return suffix if suffix and suffix.isascii() and len(suffix) <= 8 else None


def keep_aside(path: Path, label: str) -> Path:
    """Move ``path`` to ``<stem>.<label><suffix>`` (``clip.rev1.mp4`` for an older revision's
    file, ``clip.kept.mp4`` for a file no job recorded), never overwriting another file, and
    return the new path."""
    target = path.with_name(f"{path.stem}.{label}{path.suffix}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.stem}.{label}-{counter}{path.suffix}")
    os.replace(path, target)
    for sidecar_from in (sidecar_path(path),):
        if sidecar_from.exists():
            os.replace(sidecar_from, sidecar_path(target))
    return target


def rename_output(current: Path, target: Path) -> bool:
    """Move a job's file (and its sidecar, when it can) to ``target``; False, moving nothing,
    when ``target`` or its sidecar is already taken. Once the video has moved, this returns
    True: a sidecar left behind is a lesser harm than a record that points at nothing."""
    if target.exists() or sidecar_path(target).exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(current, target)
    try:
        if sidecar_path(current).exists():
            os.replace(sidecar_path(current), sidecar_path(target))
    except OSError:
        pass
    return True


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sidecar_document(
    job: Job,
    *,
    campaign: str,
    files: Sequence[Mapping[str, Any]],
    timings: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything needed to trace a video back to its job; never the API token."""
    return {
        "batchrun_sidecar": 1,
        "campaign": campaign,
        "job_key": job.key,
        "revision": job.revision,
        "take": job.take,
        "model": job.model,
        "input": dict(job.input),
        "request_id": job.request_id,
        "timings": dict(timings),
        "files": [dict(f) for f in files],
        "sha256": files[0]["sha256"] if files else None,
        "source_url": files[0]["url"] if files else None,
    }


def write_json_atomically(path: Path, document: Mapping[str, Any]) -> None:
    """Write JSON to ``<path>.part``, fsync it, then rename it into place.

    The temporary name is fixed, not random: a crash mid-write leaves a ``.part`` that the next
    attempt overwrites, never an orphan nobody cleans up.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
