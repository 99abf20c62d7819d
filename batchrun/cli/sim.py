"""``batchrun sim``: serve the embedded RunComfy simulator for demos, tests and benchmarks."""

from __future__ import annotations

import click

from batchrun.errors import ConfigError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free port).")
@click.option("--token", default="sim-token", show_default=True, envvar="RUNCOMFY_API_TOKEN", show_envvar=True,
              help="The Bearer token the simulator accepts.")
@click.option("--latency", default="uniform:0.5-2", show_default=True,
              help="Generation latency: 0.5, fixed:0.5, uniform:0.2-1, lognormal:MEDIAN,SIGMA or manual.")
@click.option("--capacity", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Jobs running at once server-side; the rest wait `in_queue` with a queue_position.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of generations that fail.")
@click.option("--faults", default="", help="Fault rates, e.g. server_error=0.1,rate_limit=0.05,reset=0.05,"
              "lost_submit=0.02,truncated_download=0.1,error_200=0.05.")
@click.option("--balance", type=float, default=None, help="Account balance in USD (default: unlimited).")
@click.option("--seed", type=int, default=None, help="Seed for reproducible faults and latencies.")
@click.option("--in-flight-limit", type=click.IntRange(min=1), default=None,
              help="Answer submits 429 while this many jobs are unfinished (a concurrency limit).")
def sim(host: str, port: int, token: str, latency: str, capacity: int, failure_rate: float, faults: str,
        balance: float | None, seed: int | None, in_flight_limit: int | None) -> None:
    """Serve the RunComfy Model API simulator until Ctrl-C (prints its base URL).

    Point batchrun at it with RUNCOMFY_BASE_URL=<url> RUNCOMFY_API_TOKEN=<token>.
    """
    from batchrun.sim import Faults, Latency, SimConfig, serve_forever

    try:
        config = SimConfig(
            token=token,
            latency=Latency.parse(latency),
            capacity=capacity,
            failure_rate=failure_rate,
            faults=Faults.parse(faults) if faults else Faults(),
            balance=balance,
            seed=seed,
            in_flight_limit=in_flight_limit,
        )
    except ValueError as error:
        raise ConfigError(f"batchrun sim: {error}") from None
    serve_forever(config, host=host, port=port)


COMMANDS = [sim]
