"""The worker pool: the only place that coordinates the store, the API client and the downloader.

One anyio task group holds:

- the submitter, which walks pending jobs in id order and submits each once an in-flight slot
  is free (at most ``concurrency`` jobs submitted-and-unfinished at RunComfy at any moment);
- one scheduler, which keeps a single heap of (due time, job) and fires each poll when due,
  instead of a sleeping task per job;
- ``downloads`` download workers fed by a queue (a separate cap from the in-flight one).

Every step writes its intent to the store before the side effect (``submitting`` before the
POST, the request id right after it), so a crash at any line leaves a state ``resume`` reads.

The ``Runner`` (``runner.py``: start, resume, take-over, stop, bookkeeping) is assembled from
one mixin per stage of a job's life, each in its own module::

    submits.py    claim pending jobs as slots free up, POST them, the budget and the submit policy
    polls.py      the scheduler's heap, one look at a job, what its answer means
    downloads.py  download workers, the sidecar, re-fetching done files that went missing
"""

from batchrun.pool.polls import EMPTY_OUTPUT_WAITS, Tracked
from batchrun.pool.runner import Runner
from batchrun.runs import Progress, RunOptions, RunSummary, SilentProgress, UnknownSubmitPolicy, new_runner_id
from batchrun.slots import Slots

__all__ = [  # the run's values live in batchrun.runs and batchrun.slots; re-exported for callers
    "EMPTY_OUTPUT_WAITS", "Progress", "RunOptions", "RunSummary", "Runner",
    "SilentProgress", "Slots", "Tracked", "UnknownSubmitPolicy", "new_runner_id",
]
