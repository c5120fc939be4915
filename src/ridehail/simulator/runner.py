"""`ridehail simulate`: start (or find) the service, build the city, run the simulation with
live progress in the terminal, write the metrics and the report."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ridehail.simulator.engine import SimConfig, Simulation, write_metrics
from ridehail.simulator.server import Server, embedded_server
from ridehail.streets import City, generate_city


@dataclass(frozen=True)
class RunPlan:
    config: SimConfig
    out_dir: Path
    url: str | None = None
    admin: tuple[str, str] | None = None
    strategies: tuple[str, ...] = ("sequential",)
    osm: Path | None = None
    city_seed: int = 1
    live: bool = True
    #: The started server's pickup estimates: "straight_line" or "road_network".
    server_eta: str = "straight_line"


def load_city(plan: RunPlan) -> tuple[City, dict[str, Any], str]:
    """The city, how the metrics name it, and the service's road_network setting."""
    if plan.osm is not None:
        from ridehail.streets import city_from_osm

        path = plan.osm.resolve()
        return city_from_osm(path), {"kind": "osm", "path": str(path)}, f"osm:{path}"
    city = generate_city(seed=plan.city_seed)
    return city, {"kind": "generated", "seed": plan.city_seed}, f"generated:{plan.city_seed}"


def progress_table(snap: dict[str, Any], label: str) -> Table:
    table = Table(title=f"ridehail simulate — {label}", show_header=False, expand=False)
    minutes = snap["t_s"] / 60
    total = snap["duration_s"] / 60
    table.add_row("simulated time", f"{minutes:5.1f} / {total:.1f} min")
    table.add_row("drivers online / busy", f"{snap['online']} / {snap['busy']}")
    table.add_row("riders waiting", str(snap["waiting"]))
    table.add_row(
        "requests / matched / completed",
        f"{snap['requests']} / {snap['matched']} / {snap['completed']}",
    )
    table.add_row("rider cancels / no driver", f"{snap['cancelled']} / {snap['no_drivers']}")
    rate = snap["requests"] / max(minutes, 1e-9)
    table.add_row("requests per simulated minute", f"{rate:.1f}")
    for endpoint, p99 in sorted(snap["p99_ms"].items()):
        if p99 is not None:
            table.add_row(f"p99 {endpoint}", f"{p99:.1f} ms")
    table.add_row("errors", str(snap["errors"]))
    return table


@contextlib.contextmanager
def _service(plan: RunPlan, strategy: str, road_network: str, out: Path) -> Iterator[Server]:
    if plan.url is not None:
        email, password = plan.admin or ("", "")
        yield Server(url=plan.url, admin_email=email, admin_password=password, log=Path())
        return
    with embedded_server(
        out,
        strategy=strategy,
        time_scale=plan.config.time_scale,
        road_network=road_network,
        eta=plan.server_eta,
    ) as server:
        yield server


async def _one(
    plan: RunPlan,
    *,
    strategy: str,
    city: City,
    city_kind: dict[str, Any],
    road_network: str,
    console: Console,
) -> dict[str, Any]:
    out = plan.out_dir / strategy if len(plan.strategies) > 1 else plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    config = replace(
        plan.config,
        label=strategy,
        strategy=strategy,
        city_kind=city_kind,
        server_eta=plan.server_eta if plan.url is None else plan.config.server_eta,
    )
    with _service(plan, strategy, road_network, out) as server:
        admin = (server.admin_email, server.admin_password) if server.admin_email else None
        with Live(console=console, refresh_per_second=2, transient=False) as live:

            def show(snap: dict[str, Any]) -> None:
                if plan.live:
                    live.update(progress_table(snap, strategy))

            sim = Simulation(config, city, server.url, admin=admin, on_progress=show)

            def setup_progress(what: str, done: int, total: int) -> None:
                if plan.live and (done % 50 == 0 or done == total):
                    live.update(f"[bold]{strategy}[/]: creating {what} {done}/{total}")

            await sim.setup(setup_progress)
            metrics = await sim.run()
    write_metrics(metrics, out / "metrics.json")
    return metrics


def simulate(plan: RunPlan, console: Console | None = None) -> tuple[list[dict[str, Any]], Path]:
    """Run every strategy of the plan in turn (same seed); returns the metrics and the
    report's path."""
    console = console or Console()
    city, city_kind, road_network = load_city(plan)
    console.print(
        f"city: {city_kind} — {city.graph.node_count:,} crossings, "
        f"{city.graph.edge_count:,} street segments"
    )
    runs = [
        asyncio.run(
            _one(
                plan,
                strategy=s,
                city=city,
                city_kind=city_kind,
                road_network=road_network,
                console=console,
            )
        )
        for s in plan.strategies
    ]
    write_metrics(runs, plan.out_dir / "metrics.json")
    from ridehail.simulator import report

    path = report.render(runs, plan.out_dir, city=city)
    report.print_summary(runs, console)
    return runs, path
