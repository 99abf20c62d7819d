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
from batchrun.download import fsync_dir, sha256_file

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
    """Move a job's file to ``target``, with its extra files (``name~2.png``...) and its sidecar,
    whose recorded paths are rewritten; False, moving nothing, when ``target`` or its sidecar is
    already taken. Once the video has moved, this returns True: an extra file or a sidecar left
    behind is a lesser harm than a record that points at nothing."""
    if target.exists() or sidecar_path(target).exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    document = read_sidecar(sidecar_path(current))
    os.replace(current, target)
    _follow(current, target, document)
    return True


def complete_rename(current: Path, target: Path) -> None:
    """Finish a rename a crash cut short after the video moved: the extra files and the sidecar
    still under the old name follow it (nothing happens when there is nothing to finish)."""
    if current.exists() or not target.is_file() or sidecar_path(target).exists():
        return
    document = read_sidecar(sidecar_path(current))
    if document is not None and document.get("sha256") == sha256_file(target):  # that sidecar is this video's
        _follow(current, target, document)


def _follow(current: Path, target: Path, document: dict[str, Any] | None) -> None:
    """Move the extra files and the sidecar of a video just moved from ``current`` to ``target``."""
    moved = {str(current): str(target)}
    for old, new in _extra_files(document, current, target):
        try:
            if old.is_file() and not new.exists():
                os.replace(old, new)
                moved[str(old)] = str(new)
        except OSError:
            pass
    try:
        if document is None:
            if sidecar_path(current).exists():
                os.replace(sidecar_path(current), sidecar_path(target))
        else:
            write_json_atomically(sidecar_path(target), _repointed(document, moved))
            sidecar_path(current).unlink(missing_ok=True)
    except OSError:
        pass


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A sidecar batchrun wrote, or None (missing, unreadable, or not ours)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("batchrun_sidecar") != 1:
        return None
    return document


def _extra_files(document: Mapping[str, Any] | None, current: Path, target: Path) -> list[tuple[Path, Path]]:
    """The extra files a sidecar lists beside ``current`` (``<stem>~N.ext``), each with its name
    beside ``target``."""
    files = document.get("files") if document is not None else None
    if not isinstance(files, list):
        return []
    pairs = []
    for entry in files[1:]:
        raw = entry.get("path") if isinstance(entry, Mapping) else None
        if not isinstance(raw, str):
            continue
        path = Path(raw)
        if path.parent == current.parent and path.name.startswith(f"{current.stem}~"):
            pairs.append((path, target.with_name(target.stem + path.name[len(current.stem):])))
    return pairs


def _repointed(document: Mapping[str, Any], moved: Mapping[str, str]) -> dict[str, Any]:
    """The sidecar with the paths of moved files rewritten."""
    files = document.get("files")
    copy = dict(document)
    if isinstance(files, list):
        copy["files"] = [
            {**entry, "path": moved.get(entry.get("path"), entry.get("path"))} if isinstance(entry, Mapping) else entry
            for entry in files
        ]
    return copy


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
    """Write JSON to ``<path>.part``, fsync it, rename it into place, and fsync the folder, so that
    once the caller records the job done a power loss cannot take the rename back.

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
    fsync_dir(path.parent)
