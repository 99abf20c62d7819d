"""Downloading: workers that fetch each finished job's files, write its sidecar and mark it done,
and the check that fetches again done files that went missing (a ``Runner`` mixin)."""

from __future__ import annotations

import glob
import os
from datetime import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from batchrun.domain import Job
from batchrun.download import verify_file
from batchrun.errors import BatchrunError, DownloadError, MissingFileError, NotAFileError, PermanentDownloadError
from batchrun.outputs import (
    complete_rename,
    destinations,
    is_image_url,
    keep_aside,
    read_sidecar,
    sidecar_document,
    sidecar_path,
    write_json_atomically,
)
from batchrun.states import JobState
from batchrun.store import StaleJobError

if TYPE_CHECKING:  # pragma: no cover
    from batchrun.pool.runner import Runner


class Downloading:
    """Mixed into ``Runner``: the download workers and the check of done files."""

    async def _verify_done(self: Runner, started: datetime) -> None:
        """Fetch again every done job whose file is missing or no longer matches its sha256
        (jobs this run finished, updated since ``started``, are not checked again)."""
        try:
            for job in self.store.iter_jobs(self.campaign_id, states=[JobState.DONE]):
                if job.updated_at is not None and job.updated_at >= started:
                    continue
                if not self.options.alone and not _inside(job.output_path, self.output_dir):
                    continue  # another machine's file: that runner verifies it
                if await anyio.to_thread.run_sync(_file_matches, job):
                    continue
                renamed = self.output_dir / job.output_name
                if str(renamed) != job.output_path and await anyio.to_thread.run_sync(_file_matches, job, renamed):
                    # moved to its new name (a renamed job) but not recorded: a crash in between
                    if job.output_path:
                        await anyio.to_thread.run_sync(complete_rename, Path(job.output_path), renamed)
                    self.store.update_output_path(job.id, str(renamed))
                    continue
                if not job.result_urls:
                    self.progress.message(f"{job.key}: file missing or corrupt and no result URL recorded")
                    continue
                try:
                    job = self.store.mark_downloading(job.id, job.result_urls)
                except StaleJobError:
                    continue
                self._moved(job, JobState.DONE, JobState.DOWNLOADING, "file missing or corrupt: fetching again")
                self._active += 1
                self._download_send.send_nowait(job)
        finally:
            self._finish_one()

    async def _download_worker(self: Runner) -> None:
        async for job in self._download_receive:
            try:
                await self._download(job)
            finally:
                self._finish_one()

    async def _download(self: Runner, job: Job) -> None:
        try:
            try:
                files = await self._fetch_all(job, job.result_urls)
            except PermanentDownloadError as refused:
                # result URLs are temporary (API.md): the paid-for video may still be there under a
                # fresh URL, so ask RunComfy once more before failing the job
                fresh = await self._fresh_urls(job)
                if not fresh:
                    raise refused from None
                files = await self._fetch_all(job, fresh)
        except NotAFileError as error:
            # the video is paid for and may still come: never a failed job for a blank answer
            self.store.record_event(job.id, "download_error", {"error": error.message})
            self._download_later(job, error.message)
            return
        except MissingFileError as error:
            if not self._just_finished(job):
                self._fail(job, f"download failed: {error.message}", expected=JobState.DOWNLOADING)
                return
            self.store.record_event(job.id, "download_error", {"error": error.message})
            self._download_later(job, f"{error.message}, moments after the job finished")
            return
        except PermanentDownloadError as error:
            self._fail(job, f"download failed: {error.message}", expected=JobState.DOWNLOADING)
            return
        except OSError as error:  # the local disk, not the network: nothing later jobs can do better
            self._cannot_write(job, error)
            return
        except (DownloadError, httpx.HTTPError) as error:
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            self.store.record_event(job.id, "download_error", {"error": message})
            self._download_later(job, message)
            return
        primary = files[0]
        if is_image_url(primary["url"]):
            self.store.record_event(job.id, "no_video_in_output", {"url": primary["url"]})
            self.progress.message(f"{job.key}: RunComfy's output holds no video; kept its image as "
                                  f"{Path(primary['path']).name}")
        try:
            await anyio.to_thread.run_sync(  # it fsyncs: keep the event loop free meanwhile
                write_json_atomically,
                sidecar_path(Path(primary["path"])),
                sidecar_document(job, campaign=self.summary.campaign, files=files, timings=_timings(job)),
            )
        except OSError as error:  # the disk filled up after the video fitted: the job stays `downloading`
            self._cannot_write(job, error)
            return
        try:
            done = self.store.mark_done(  # the "downloaded" events ride in the same commit
                job.id, output_path=primary["path"], size=primary["size"], sha256=primary["sha256"],
                downloaded=[{"url": f["url"], "size": f["size"], "sha256": f["sha256"]} for f in files],
            )
        except StaleJobError:
            return
        self.summary.downloaded += 1
        self._moved(done, JobState.DOWNLOADING, JobState.DONE)

    def _cannot_write(self: Runner, job: Job, error: OSError) -> None:
        """The output folder refused a write (disk full, read-only): stop submitting; the job
        stays `downloading` and the next run fetches it again."""
        self.store.record_event(job.id, "download_error", {"error": str(error)})
        self.stop_submitting(f"cannot write {job.output_name} in {self.output_dir}: {error.strerror or error}; "
                             "no new jobs are submitted")

    def _just_finished(self: Runner, job: Job) -> bool:
        """Whether the job finished within ``RunOptions.missing_file_grace`` (its file may not have
        reached the file host yet); a job finished long ago has lost its file for good."""
        if job.finished_at is None:
            return True
        return (self.store.now() - job.finished_at).total_seconds() < self.options.missing_file_grace

    def _download_later(self: Runner, job: Job, message: str) -> None:
        """A download that outlived its retries (a file host down for minutes) is tried again
        after each of ``RunOptions.download_retry_delays``, so a short outage does not end an overnight run with
        unfinished jobs; past those, or once the run is stopping, the next run resumes it."""
        delays = self.options.download_retry_delays
        tries = self._later_downloads[job.id] = self._later_downloads.get(job.id, 0) + 1
        if tries > len(delays) or self._stop_submitting:
            self.progress.message(f"{job.key}: download interrupted ({message}); the next run resumes it")
            return
        delay = delays[tries - 1]
        self.progress.message(f"{job.key}: download interrupted ({message}); trying again in {delay:.0f}s")
        self._active += 1
        assert self._tg is not None
        self._tg.start_soon(self._requeue_download, job, delay)

    async def _requeue_download(self: Runner, job: Job, delay: float) -> None:
        """Hand the job back to the download workers after ``delay`` (sooner: never, on a stop)."""
        await self._sleep_unless_stopped(delay)
        if self._stop_submitting:
            self.progress.message(f"{job.key}: download left for the next run (the run is stopping)")
            self._finish_one()
            return
        self._download_send.send_nowait(job)  # the worker's own _finish_one ends this one

    async def _fetch_all(self: Runner, job: Job, urls: Sequence[str]) -> list[dict[str, Any]]:
        """Every file of the job's output; the first (the video) must arrive, the others are extras:
        one the server refuses is recorded and skipped, never a reason to fail a paid-for job."""
        files: list[dict[str, Any]] = []
        for index, (url, dest) in enumerate(zip(urls, destinations(self.output_dir, job.output_name, urls), strict=True)):
            kept = self._make_room(job, dest)
            try:
                # the request, not the URL, names the file: a refreshed signature resumes the same
                # `.part`, another job's or revision's `.part` under this name is never continued
                source = f"campaign {self.campaign_id} job {job.key} request {job.request_id} file {index}"
                fetched = await self.downloader.fetch(url, dest, source=source)
            except PermanentDownloadError as error:
                if index == 0:
                    raise
                self.store.record_event(job.id, "extra_file_skipped", {"url": url, "error": error.message})
                self.progress.message(f"{job.key}: extra output file skipped ({error.message})")
                continue
            if kept is not None:
                if await anyio.to_thread.run_sync(verify_file, kept, fetched.size, fetched.sha256):
                    kept.unlink()  # this job's own download after all: no copy to keep
                else:
                    self._kept_aside(job, dest, kept)
            if index and any(f["sha256"] == fetched.sha256 for f in files):
                # the same file under another URL (a second signature, a `videos` list repeating
                # `video`): one copy is enough
                await anyio.to_thread.run_sync(fetched.path.unlink)
                self.store.record_event(job.id, "extra_file_skipped",
                                        {"url": url, "error": "same file as an earlier URL"})
                continue
            files.append({"path": str(fetched.path), "url": url, "size": fetched.size, "sha256": fetched.sha256})
        return files

    def _kept_aside(self: Runner, job: Job, dest: Path, kept: Path) -> None:
        owner = (read_sidecar(sidecar_path(kept)) or {}).get("campaign")
        self.store.record_event(job.id, "file_kept_aside", {"path": str(kept), "campaign": owner})
        if isinstance(owner, str) and owner != self.summary.campaign:
            # two campaigns that write the same names into one folder take each file from the
            # other on every run: say so, once per file, with the way out
            self.progress.message(f"{job.key}: {dest.name} was campaign `{owner}`'s file (its sidecar says so), "
                                  f"kept it as {kept.name}; campaigns sharing {dest.parent} must not use the same "
                                  "file names: give each its own output.dir")
            return
        self.progress.message(f"{job.key}: {dest.name} was already there (no job's file); kept it as {kept.name}")

    async def _fresh_urls(self: Runner, job: Job) -> tuple[str, ...]:
        """The job's output URLs as RunComfy gives them now, when they differ from the refused ones."""
        if not job.request_id:
            return ()
        try:
            report = await self.client.result(job.request_id)
        except (BatchrunError, httpx.HTTPError):
            return ()
        urls = tuple(report.output_urls) if report.status == "completed" else ()
        if not urls or urls == tuple(job.result_urls):
            return ()
        self.store.record_event(job.id, "result_urls_refreshed", {"result_urls": list(urls)})
        return urls

    def _make_room(self: Runner, job: Job, dest: Path) -> Path | None:
        """Never overwrite a file that is not this job's: an older revision's file is kept as
        ``name.revN.mp4`` (and its record follows it); a file no job recorded is kept as
        ``name.kept.mp4``, whose path is returned (the caller drops it if it turns out to be this
        job's own download, put in place just before a crash kept it from being recorded)."""
        if not dest.exists():
            self._reclaim_set_aside(job, dest)
            return None
        owners = self.store.find_by_output_path(str(dest))
        for other in owners:
            if other.id != job.id:
                moved = keep_aside(dest, f"rev{other.revision}")
                self.store.update_output_path(other.id, str(moved))
                self.progress.message(f"{other.key}: kept revision {other.revision}'s file as {moved.name}")
                return None
        if owners or _sidecar_names(dest, job.key, campaign=self.summary.campaign):
            return None  # this job's own earlier file: fetched again over it
        return keep_aside(dest, "kept")

    def _reclaim_set_aside(self: Runner, job: Job, dest: Path) -> None:
        """Finish a move aside that a crash cut short: an older revision still recorded at
        ``dest`` while its file already sits as ``name.revN.mp4`` (found by its sha256) gets
        its record, and its sidecar if that stayed at ``dest``, before this job's file comes."""
        for other in self.store.find_by_output_path(str(dest)):
            if other.id == job.id:
                continue
            pattern = f"{glob.escape(dest.stem)}.rev{other.revision}*{glob.escape(dest.suffix)}"
            for candidate in sorted(dest.parent.glob(pattern)):
                if _file_matches(other, candidate):
                    if not sidecar_path(candidate).exists() and _sidecar_names(
                            dest, other.key, other.revision, campaign=self.summary.campaign):
                        os.replace(sidecar_path(dest), sidecar_path(candidate))
                    self.store.update_output_path(other.id, str(candidate))
                    break


def _inside(path: str | None, folder: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(folder.resolve())


def _sidecar_names(path: Path, key: str, revision: int | None = None, *, campaign: str) -> bool:
    """Whether the sidecar beside ``path`` says it is the file of the job ``key`` (and revision) of
    this campaign: keys such as ``hero-t1`` repeat across campaigns sharing an output folder."""
    document = read_sidecar(sidecar_path(path))
    return (document is not None and document.get("job_key") == key and document.get("campaign") == campaign
            and revision in (None, document.get("revision")))


def _file_matches(job: Job, path: Path | None = None) -> bool:
    """Whether the job's file (or ``path``) is there with the recorded size and sha256."""
    target = path or (Path(job.output_path) if job.output_path else None)
    return target is not None and job.sha256 is not None and verify_file(target, job.size, job.sha256)

def _timings(job: Job) -> dict[str, Any]:
    return {
        "created_at": job.created_at,
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
