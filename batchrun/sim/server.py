"""The simulator as a running server: its own event loop in a background thread.

A thread (rather than a task in the caller's loop) lets sync tests, async tests and
``batchrun run --simulate`` all use it the same way: ``with Simulator(config) as sim: ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from .app import App
from .config import Faults, Latency, SimConfig
from .engine import Engine, SimStats
from .http import HttpConnection


class Simulator:
    """Runs the API on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config if config is not None else SimConfig()
        self.host = host
        self.port = port
        self.engine = Engine(self.config, clock=clock)
        self.app = App(self.config, self.engine)
        self.app.api_host = host
        self._connections: set[HttpConnection] = set()
        self._servers: list[asyncio.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._startup_error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid once started)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Simulator:
        """Bind and serve in the background; after a stop() it serves the same jobs on the same port."""
        self._startup_error = None
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="batchrun-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._servers = []
        try:
            loop.run_until_complete(self._bind())
        except BaseException as error:  # noqa: BLE001 - handed to start()
            self._startup_error = error
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            for server in self._servers:
                server.close()
            for connection in list(self._connections):
                connection.abort()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> HttpConnection:
            return HttpConnection(self.app, self._connections)

        server = await loop.create_server(factory, self.host, self.port, family=socket.AF_INET, backlog=1024)
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        self.app.port = self.port
        if self.config.file_host == "localhost" and self.host == "127.0.0.1":
            try:  # where "localhost" also names ::1, answer there too
                self._servers.append(await loop.create_server(factory, "::1", self.port, family=socket.AF_INET6))
            except OSError:
                pass

    def stop(self) -> None:
        """Close every connection and the listener; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- observation and control (thread-safe) -------------------------------------------
    def stats(self) -> SimStats:
        """A consistent snapshot of counters and job totals."""
        return self.engine.stats()

    def finish(self, request_id: str | None = None, *, fail: bool = False) -> None:
        """Complete (or fail) one job now, or every running job when ``request_id`` is None."""
        self.engine.finish(request_id, fail=fail)

    def set_faults(self, faults: Faults) -> None:
        self.app.faults = faults

    def set_blank_files(self, kind: str | None) -> None:
        """``"html"`` or ``"empty"``: file URLs answer 200 with a web page or nothing; ``"missing"``:
        404; None: files."""
        self.app.blank_files = kind

    def set_balance(self, usd: float | None) -> None:
        self.engine.set_balance(usd)

    def wait_for_requests(self, count: int, timeout: float = 60.0) -> bool:
        """Block (without polling) until ``count`` requests of any kind were answered."""
        return self.engine.wait_for_requests(count, timeout)

    def set_latency(self, latency: Latency) -> None:
        """Jobs created from now on take this latency (e.g. leave manual mode)."""
        self.engine.reconfigure(latency=latency)

    def set_failure_rate(self, rate: float) -> None:
        """Jobs created from now on fail with this probability."""
        self.engine.reconfigure(failure_rate=rate)

    def wait_for_jobs(self, count: int, timeout: float = 60.0) -> bool:
        """Block (without polling) until ``count`` jobs exist; for tests that act mid-run."""
        return self.engine.wait_for_jobs(count, timeout)

    def set_token(self, token: str) -> None:
        self.app.token = token

    def served_files(self) -> dict[str, str]:
        """Result URL -> sha256 of the full file, for every file requested at least once."""
        return self.app.served_files()

    def job_status(self, request_id: str) -> str | None:
        """The job's current status word (standard spelling), or None for an unknown id."""
        found = self.engine.get(request_id)
        return None if found is None else found[0].status

    def file_url(self, request_id: str) -> str:
        """The public URL of a job's result file (whether or not it is ready)."""
        return self.app.file_url(request_id)


def serve_forever(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until Ctrl-C, announcing the address on stdout."""
    with Simulator(config, host=host, port=port) as sim:
        print(f"RunComfy simulator listening on {sim.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchrun-sim", description="Serve the embedded RunComfy simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=SimConfig.token)
    parser.add_argument("--latency", type=Latency.parse, default=Latency(), help='e.g. "0.2", "uniform:0.1-0.5", "lognormal:2,0.6", "manual"')
    parser.add_argument("--queue-delay", type=float, default=0.0)
    parser.add_argument("--capacity", type=int, default=SimConfig.capacity)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--faults", type=Faults.parse, default=Faults(), help='e.g. "server_error=0.1,rate_limit=0.05"')
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--balance", type=float, default=None)
    parser.add_argument("--file-host", default=SimConfig.file_host)
    parser.add_argument("--status-variant", choices=("standard", "alt"), default="standard")
    parser.add_argument("--in-flight-limit", type=int, default=None,
                        help="answer submits 429 while this many jobs are unfinished")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m batchrun.sim``: serve with settings from the command line."""
    args = build_parser().parse_args(argv)
    config = SimConfig(
        token=args.token,
        latency=args.latency,
        queue_delay=args.queue_delay,
        capacity=args.capacity,
        failure_rate=args.failure_rate,
        faults=args.faults,
        seed=args.seed,
        balance=args.balance,
        file_host=args.file_host,
        status_variant=args.status_variant,
        in_flight_limit=args.in_flight_limit,
    )
    serve_forever(config, args.host, args.port)
