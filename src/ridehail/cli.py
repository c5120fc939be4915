"""The `ridehail` command: serve, worker, db, users."""

from __future__ import annotations

import asyncio
import getpass
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ridehail import bootstrap
from ridehail.logging import configure as configure_logging
from ridehail.settings import Settings

app = typer.Typer(help="ridehail: a ride-hailing backend.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Operations staff accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
console = Console(stderr=True)

#: How `serve` runs uvicorn (the benchmarks' reference servers run with the same).
UVICORN_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    # ridehail writes its own access log (structured, by route template); uvicorn's would
    # format the client address and path of every request even when filtered.
    "access_log": False,
    "ws_max_size": 65_536,
    "proxy_headers": False,
    "lifespan": "on",
}


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    role: str = typer.Option(
        "all", help="'all': API plus relay and dispatcher; 'api': the HTTP API only."
    ),
    workers: int = typer.Option(1, min=1, help="API processes (production profile only)."),
) -> None:
    """Serve the HTTP API (and, with --role all, the background workers)."""
    import uvicorn

    settings = Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if role not in ("all", "api"):
        raise typer.BadParameter("role must be 'all' or 'api'")
    if settings.is_sqlite:
        from ridehail.db.migrate import upgrade

        upgrade(settings.database_url)
        if workers > 1 or role != "all":
            raise typer.BadParameter("the embedded default runs as one process with --role all")
    _ = settings.resolved_jwt_secret  # fail early if production lacks a secret
    import os

    os.environ["RIDEHAIL_SERVE_ROLE"] = role
    if workers > 1:
        _share_metrics_between_workers(settings)
    console.print(f"[bold]ridehail[/] serving on http://{host}:{port} (docs: /docs)")
    uvicorn.run("ridehail.asgi:app", host=host, port=port, workers=workers, **UVICORN_OPTIONS)


def _share_metrics_between_workers(settings: Settings) -> None:
    """Give the worker processes a fresh directory for their Prometheus samples (see
    ``ops.metrics``); they inherit the variable. An operator's own directory is kept, only
    the sample files of an earlier run are removed from it."""
    import os
    from pathlib import Path

    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    directory = Path(chosen) if chosen else Path(settings.var_dir) / "prometheus"
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory.resolve())


@app.command()
def worker(
    kind: str = typer.Argument(
        ..., help="A role: dispatch, notifications, realtime, relay, ... (or 'all')."
    ),
) -> None:
    """Run background work without HTTP (production profile)."""
    settings = Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    roles = bootstrap.ALL_ROLES if kind == "all" else frozenset({kind})
    if not roles <= bootstrap.ALL_ROLES:
        raise typer.BadParameter(
            f"kind must be one of: {', '.join(sorted(bootstrap.ALL_ROLES))}, all"
        )
    if settings.redis_url is None:
        raise typer.BadParameter(
            "workers need RIDEHAIL_REDIS_URL (the embedded default runs them inside serve)"
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with bootstrap.running(settings, roles=roles):
            console.print(f"worker {kind} running; Ctrl-C to stop")
            await stop.wait()

    asyncio.run(main())


STRATEGIES = ("sequential", "broadcast", "batch")


DEFAULT_SIM_OUT = Path("var/simulation")


@app.command()
def simulate(  # noqa: PLR0917 - one parameter per command-line option
    drivers: int = typer.Option(300, min=1, help="Drivers in the fleet."),
    minutes: float = typer.Option(15.0, min=0.5, help="Simulated minutes to run."),
    time_scale: float = typer.Option(
        10.0, min=1.0, max=120.0, help="Simulated seconds per wall-clock second."
    ),
    seed: int = typer.Option(1, help="Same seed, same city, demand and driver habits."),
    strategy: str = typer.Option("sequential", help="Dispatch strategy of the started server."),
    compare: str | None = typer.Option(
        None, help="Run the same seed under several strategies, e.g. 'batch,sequential'."
    ),
    url: str | None = typer.Option(
        None, help="A running service to drive (time_scale 1 unless it was set up for more)."
    ),
    admin_email: str | None = typer.Option(None, help="With --url: an admin, for the surge map."),
    admin_password: str | None = typer.Option(None),
    osm: Annotated[
        Path | None, typer.Option(exists=True, help="Drive on an .osm.pbf extract.")
    ] = None,
    peak_per_min: float | None = typer.Option(
        None, min=0.01, help="Ride requests per simulated minute at the peaks (default drivers/20)."
    ),
    start_hour: float = typer.Option(7.5, min=0.0, max=24.0, help="Local hour the run starts."),
    out: Annotated[Path, typer.Option(help="Where metrics and report go.")] = DEFAULT_SIM_OUT,
    live: bool = typer.Option(True, help="Live progress in the terminal."),
    part: str = typer.Option(
        "1/1", help="With --url: simulate part K of N of the fleet and demand ('2/4')."
    ),
    server_eta: str = typer.Option(
        "straight_line",
        help="The started server's pickup estimates: straight_line or road_network.",
    ),
    report_every: float = typer.Option(
        3.0, min=0.1, help="Wall seconds between a driver's location reports."
    ),
    riders: int | None = typer.Option(
        None, min=1, help="Rider accounts in the whole fleet (default: one per driver)."
    ),
) -> None:
    """Simulate a city (drivers, riders, streets) against the service's public API, then
    write metrics.json and an HTML report. Without --url it starts `ridehail serve` on the
    embedded default itself."""
    from ridehail.simulator.engine import SimConfig
    from ridehail.simulator.runner import RunPlan
    from ridehail.simulator.runner import simulate as run_simulation

    strategies = tuple(s.strip() for s in (compare or strategy).split(",") if s.strip())
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise typer.BadParameter(f"strategies must be among {', '.join(STRATEGIES)}")
    if url is not None and len(strategies) > 1:
        raise typer.BadParameter("--compare starts its own servers; leave out --url")
    try:
        k, n = (int(x) for x in part.split("/"))
    except ValueError as exc:
        raise typer.BadParameter("--part is K/N, e.g. 1/2") from exc
    if not 1 <= k <= n:
        raise typer.BadParameter("--part K/N needs 1 <= K <= N")
    if n > 1 and url is None:
        raise typer.BadParameter("--part splits a fleet across processes driving one --url")
    config = SimConfig(
        part=k - 1,
        parts=n,
        drivers=drivers,
        duration_s=minutes * 60,
        time_scale=time_scale,
        seed=seed,
        peak_per_min=peak_per_min,
        start_hour=start_hour,
        report_every_s=report_every,
        riders=riders,
    )
    if server_eta not in ("straight_line", "road_network"):
        raise typer.BadParameter("--server-eta is straight_line or road_network")
    admin = (admin_email, admin_password) if admin_email and admin_password else None
    plan = RunPlan(
        server_eta=server_eta,
        config=config,
        out_dir=out,
        url=url,
        admin=admin,
        strategies=strategies,
        osm=osm,
        city_seed=seed,
        live=live,
    )
    _, report_path = run_simulation(plan, console=Console())
    Console().print(f"report: [bold]{report_path.resolve()}[/]")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations to RIDEHAIL_DATABASE_URL."""
    from ridehail.db.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, revision)
    console.print(f"database at revision {revision}")


@users_app.command("create-admin")
def create_admin(
    email: str = typer.Option(..., prompt=True),
    name: str = typer.Option("Operations"),
    password: str | None = typer.Option(None, help="Prompted for when omitted."),
) -> None:
    """Create an operations (admin) account; the public API never creates one."""
    from ridehail.accounts import Passwords, register
    from ridehail.db import Database
    from ridehail.db.migrate import upgrade
    from ridehail.kernel.auth import Role

    settings = Settings()
    if settings.is_sqlite:
        upgrade(settings.database_url)
    secret = password or getpass.getpass("Password (8+ characters): ")
    if len(secret) < 8:
        raise typer.BadParameter("the password needs at least 8 characters")

    async def main() -> str:
        hasher = Passwords(
            time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib
        )
        password_hash = await hasher.hash(secret)
        db = Database(settings.database_url)
        try:
            async with db.transaction() as session:
                account = await register(
                    session, role=Role.ADMIN, name=name, email=email, password_hash=password_hash
                )
            return account.id
        finally:
            await db.dispose()

    admin_id = asyncio.run(main())
    console.print(f"admin created: {admin_id}")
