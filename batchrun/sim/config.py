"""How a simulated RunComfy behaves: latency, faults, capacity, balance and answer variants.

Frozen values with a ``parse`` for the CLI text forms, so ``batchrun sim`` and
``batchrun run --simulate`` can take the same strings the tests use.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

LATENCY_KINDS = ("fixed", "uniform", "lognormal", "manual")
STATUS_VARIANTS = ("standard", "alt")

#: What one accepted submit costs against ``SimConfig.balance`` (a flat price keeps tests simple:
#: a balance of 3.0 buys exactly three jobs). Cancelling a queued job refunds it.
PRICE_PER_JOB_USD = 1.0


@dataclass(frozen=True)
class Latency:
    """Seconds of generation once a job starts running."""

    kind: str = "fixed"  # "fixed" | "uniform" | "lognormal" | "manual" (only finish() ends a job)
    value: float = 0.2  # fixed value / uniform low / lognormal median
    high: float = 0.5  # uniform high
    sigma: float = 0.5  # lognormal sigma

    def __post_init__(self) -> None:
        if self.kind not in LATENCY_KINDS:
            raise ValueError(f"latency kind must be one of {', '.join(LATENCY_KINDS)}: {self.kind!r}")
        numbers = (self.value, self.high, self.sigma)
        if not all(math.isfinite(n) for n in numbers):  # nan would never finish a job
            raise ValueError("latency values must be finite numbers")
        if any(n < 0 for n in numbers):
            raise ValueError("latency values must not be negative")
        if self.kind == "uniform" and self.high < self.value:
            raise ValueError(f"uniform latency needs low <= high: {self.value}-{self.high}")

    @classmethod
    def parse(cls, text: str) -> Latency:
        """``"0.2"``, ``"fixed:0.2"``, ``"uniform:0.1-0.5"``, ``"lognormal:2,0.6"``, ``"manual"``."""
        text = text.strip()
        kind, _, arg = text.partition(":")
        kind = kind.strip().lower()
        try:
            if kind == "manual" and not arg:
                return cls(kind="manual")
            if not arg:  # a bare number
                return cls(kind="fixed", value=float(text))
            if kind == "fixed":
                return cls(kind="fixed", value=float(arg))
            if kind == "uniform":
                low, _, high = arg.partition("-")
                return cls(kind="uniform", value=float(low), high=float(high))
            if kind == "lognormal":
                median, _, sigma = arg.partition(",")
                return cls(kind="lognormal", value=float(median), sigma=float(sigma or 0.5))
        except ValueError as error:
            raise ValueError(f"bad latency {text!r}: {error}") from None
        raise ValueError(
            f"bad latency {text!r}: use 0.2, fixed:0.2, uniform:0.1-0.5, lognormal:2,0.6 or manual"
        )


@dataclass(frozen=True)
class Faults:
    """Probabilities (0..1) of misbehaving, drawn per request of the affected kind."""

    server_error: float = 0.0  # 500 + error_code 500001, or a bare 502/503 HTML body
    rate_limit: float = 0.0  # 429, Retry-After (integer seconds) present on most answers
    retry_after: float = 1.0  # the Retry-After value, in seconds (rounded up to an integer)
    reset: float = 0.0  # abort the TCP connection without answering
    lost_submit: float = 0.0  # submit only: create the job, then abort without answering
    truncated_download: float = 0.0  # files only: full Content-Length, part of the body, close
    error_200: float = 0.0  # HTTP 200 carrying {"error_code": 500001, ...} instead of the answer

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "retry_after":
                if value < 0:
                    raise ValueError("retry_after must not be negative")
            elif not 0.0 <= value <= 1.0:
                raise ValueError(f"fault probability {f.name}={value} is not within 0..1")

    @classmethod
    def parse(cls, text: str) -> Faults:
        """``"server_error=0.1,rate_limit=0.05,retry_after=2"`` (empty text: no faults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, float] = {}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, raw = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                raise ValueError(f"bad fault {part!r}: use name=probability with name in {', '.join(sorted(names))}")
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"bad fault {part!r}: {raw!r} is not a number") from None
        return cls(**values)

    def any(self) -> bool:
        """Whether any fault can happen at all (lets the server skip the dice)."""
        return any(getattr(self, f.name) > 0 for f in dataclasses.fields(self) if f.name != "retry_after")


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulator instance needs; ``Simulator(SimConfig(...))``."""

    token: str = "sim-token"  # required Bearer token
    latency: Latency = field(default_factory=Latency)
    queue_delay: float = 0.0  # minimum seconds in_queue before a job can start
    capacity: int = 1000  # jobs running at once; the rest wait FIFO with a queue_position
    failure_rate: float = 0.0  # fraction of jobs whose generation fails
    faults: Faults = field(default_factory=Faults)
    seed: int | None = None  # random.Random(seed) for faults, latency and failures
    balance: float | None = None  # None: unlimited; else USD, PRICE_PER_JOB_USD per submit
    file_host: str = "localhost"  # host NAME in result URLs (differs from the API's 127.0.0.1)
    status_variant: str = "standard"  # "alt": succeeded/canceled, no optional fields, output.videos[]
    submit_http_status: int = 200  # any 2xx is a successful submit; 201/202 exercise that
    error_message_key: str = "error_message"  # "message" exercises the other documented spelling
    max_body_bytes: int = 1_000_000  # larger request bodies answer 413
    reject_prompts_containing: str | None = None  # 422 for such prompts, as a content filter would
    extra_output_url: str | None = None  # also listed in every output (`images: [url]`), e.g. a URL that 404s
    expire_first_urls: bool = False  # the first result URL of each job answers 403 (expired); later ones work
    #: "html" or "empty": file URLs answer HTTP 200 with a web page (text/html) or an empty body,
    #: as a CDN or a login wall may; "missing": 404, as a file host that has not caught up with a
    #: job that just finished may (``Simulator.set_blank_files`` changes it while running)
    blank_files: str | None = None
    image_only_output: bool = False  # outputs hold only `image` (a .png URL), no video
    failure_error_code: int | None = None  # a failed job's status/result also carry this top-level `error_code`
    thumbnail_output: bool = False  # outputs also list `images: [<the job's .png URL>]`, a file that is served
    repeated_video_url: bool = False  # outputs also list the video under `videos` with another query string
    empty_cancel_answers: bool = False  # a cancel answers 204 with no body (it still cancels a queued job)
    #: submits answer 429 (no code, no Retry-After) while this many jobs are unfinished, as a
    #: service that enforces a concurrency limit with 429 may
    in_flight_limit: int | None = None

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")
        if self.in_flight_limit is not None and self.in_flight_limit < 1:
            raise ValueError("in_flight_limit must be at least 1")
        if self.balance is not None and not (math.isfinite(self.balance) and self.balance >= 0):
            raise ValueError(f"balance must be a number of USD >= 0 (got {self.balance})")
        if self.queue_delay < 0:
            raise ValueError("queue_delay must not be negative")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be within 0..1")
        if self.status_variant not in STATUS_VARIANTS:
            raise ValueError(f"status_variant must be one of {', '.join(STATUS_VARIANTS)}")
        if not 200 <= self.submit_http_status <= 299:
            raise ValueError("submit_http_status must be a 2xx code")
        if self.blank_files not in (None, "html", "empty", "missing"):
            raise ValueError('blank_files must be "html", "empty", "missing" or None')
        if self.error_message_key not in ("error_message", "message"):
            raise ValueError('error_message_key must be "error_message" or "message"')
