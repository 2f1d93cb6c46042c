"""`guahao bench ...`: benchmark commands (registered as a sub-app of the `guahao` CLI)."""
from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer

bench_app = typer.Typer(help="Benchmarks (results and how to read them: docs/BENCHMARKS.md)", no_args_is_help=True)


class Backend(StrEnum):
    postgresql = "postgresql"
    sqlite = "sqlite"


def _run_async(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        import asyncio

        return asyncio.run(coro)
    return uvloop.run(coro)


@bench_app.command("rush")
def rush(
    database: Backend = typer.Option(Backend.postgresql, help="database of the service (and of the references)"),
    patients: int = typer.Option(5000, min=1, help="N: accounts, each with one verified patient; one hold each"),
    slots: int = typer.Option(100, min=1, help="C: platform seats of the released schedule"),
    connections: int = typer.Option(256, min=1, help="K: concurrent keep-alive HTTP/1.1 connections"),
    workers: int | None = typer.Option(None, min=1, help="W: uvicorn worker processes (default 2, SQLite 1)"),
    target: str | None = typer.Option(None, help="base URL of a running guahao; seeds its database "
                                         "(--database-url or GUAHAO_DATABASE_URL, keys from GUAHAO_*)"),
    database_url: str | None = typer.Option(None, help="with --target: the target's database URL"),
    redis: bool = typer.Option(False, "--redis/--no-redis", help="give guahao GUAHAO_REDIS_URL (shared sold-out gate)"),
    redis_url: str = typer.Option("redis://127.0.0.1:6379/0", help="Redis for --redis"),
    db_pool_size: int | None = typer.Option(None, help="guahao's GUAHAO_DB_POOL_SIZE (default: product default)"),
    bare_pool_size: int = typer.Option(5, help="asyncpg pool per worker of the bare endpoint"),
    raw_pools: str = typer.Option("4,64", help="asyncpg pool sizes of the raw-driver references"),
    references: bool = typer.Option(True, "--references/--no-references", help="also run the references"),
    lead: float = typer.Option(3.0, help="seconds between publishing and the release instant T0"),
    warmup: int = typer.Option(64, min=0, help="holds sent before T0 (answered not_yet_released) to warm workers"),
    keep_logs: bool = typer.Option(False, help="keep the servers' logs and the SQLite files"),
    json_out: Path | None = typer.Option(None, help="also write the figures as JSON here"),
    his_mode: str = typer.Option("local", help="local; realtime (a HIS simulator process decides every hold); "
                                               "synced (connected to one, holds decided locally)"),
    his_latency_ms: int = typer.Option(20, min=0, help="with --his-mode realtime: the HIS's added latency"),
    release_mode: str = typer.Option("fifo", help="fifo; draw (摇号): after the first-come rush, the same N enter "
                                                  "a draw for the C seats on a fresh database, reported next to it"),
    draw_window: int = typer.Option(10, min=10, max=60, help="with --release-mode draw: the entry window, seconds"),
    draw_spread: float = typer.Option(0.0, min=0.0, help="with --release-mode draw: entrants arrive evenly over "
                                                         "this many seconds from T0 (0: all at T0)"),
) -> None:
    """The 08:00 release rush: N patients press "book" at T0 for C seats of one doctor."""
    from guahao.bench.report import table, target_lines
    from guahao.bench.runner import RushOptions, machine, run

    opts = RushOptions(
        database=database.value, patients=patients, slots=slots, connections=connections,
        workers=workers or (2 if database is Backend.postgresql else 1), target=target, database_url=database_url,
        redis=redis, redis_url=redis_url, db_pool_size=db_pool_size, bare_pool_size=bare_pool_size,
        raw_pools=[int(p) for p in raw_pools.split(",") if p.strip()], references=references, lead_seconds=lead,
        warmup=warmup, keep_logs=keep_logs, his_mode=his_mode, his_latency_ms=his_latency_ms,
        release_mode=release_mode, draw_window=draw_window, draw_spread=draw_spread,
    )
    if release_mode not in ("fifo", "draw"):
        raise typer.BadParameter("--release-mode is fifo or draw")
    if release_mode == "draw" and (target or his_mode != "local"):
        raise typer.BadParameter("--release-mode draw runs its own server with a local hospital")
    if his_mode not in ("local", "realtime", "synced"):
        raise typer.BadParameter("--his-mode is local, realtime or synced")
    if his_mode != "local" and target:
        raise typer.BadParameter("--his-mode starts its own HIS simulator; it cannot use --target")
    info = machine()
    typer.echo(f"guahao bench rush: {opts.database}, {opts.workers} worker(s), {patients} patients, {slots} slots, "
               f"{connections} connections, redis {'on' if redis else 'off'}, his-mode {his_mode}"
               + (f", target {target}" if target else ""))
    typer.echo(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']}; {info['date']}")
    outcome = _run_async(run(opts, lambda line: typer.echo(f"  . {line}", err=True)))
    typer.echo("")
    typer.echo(table(outcome.results))
    guahao = outcome.results[0]
    bare = next((r for r in outcome.results if r.label == "bare endpoint"), None)
    for note in guahao.notes + outcome.notes:
        typer.echo(f"note: {note}")
    typer.echo("")
    typer.echo("targets of issue 11 (goals at 5,000 patients / 100 slots / 256 connections / PostgreSQL / 2 workers):")
    lines = target_lines(guahao, bare)
    for line in lines:
        typer.echo("  " + line)
    if outcome.draw is not None:
        typer.echo("")
        arrivals = f"entrants spread over {draw_spread:g} s" if draw_spread else "every entrant at T0"
        typer.echo(f"the same rush released by draw (摇号), fresh database, {draw_window} s window, {arrivals}:")
        for line in outcome.draw.lines() + [f"note: {n}" for n in outcome.draw.notes]:
            typer.echo("  " + line)
    if outcome.log_dir:
        typer.echo(f"logs kept in {outcome.log_dir}")
    if json_out:
        json_out.write_text(json.dumps({"options": opts.__dict__, "machine": info, "targets": lines,
                                        "results": [r.as_dict() for r in outcome.results],
                                        "draw": outcome.draw.as_dict() if outcome.draw is not None else None},
                                       ensure_ascii=False, indent=2))
    if not guahao.oversell_ok or guahao.http_5xx:
        raise typer.Exit(1)


@bench_app.command("overload")
def overload(
    database: Backend = typer.Option(Backend.postgresql, help="database of the service"),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes"),
    admission: str = typer.Option("hold=64", help="the server's GUAHAO_ADMISSION_LIMITS"),
    db_pool_size: int | None = typer.Option(None, help="the server's GUAHAO_DB_POOL_SIZE (default: product default)"),
    probe: int = typer.Option(1500, min=10, help="holds of the closed-loop capacity phase"),
    connections: int = typer.Option(64, min=1, help="connections of the capacity phase"),
    seconds: float = typer.Option(5.0, min=0.5, help="length of each open-loop phase"),
    factor: float = typer.Option(3.0, min=1.0, help="the overload phase offers this many times the capacity"),
    timeout: float = typer.Option(10.0, help="client timeout: slower answers count as timeouts"),
    keep_logs: bool = typer.Option(False, help="keep the server's log"),
    json_out: Path | None = typer.Option(None, help="also write the figures as JSON here"),
) -> None:
    """Holds offered at 1x and at FACTORx the measured capacity (open loop): admission control
    must answer every request in time (a hold or an immediate 503 with Retry-After) and lose
    no booking."""
    import shutil
    import tempfile

    from guahao.bench import overload as ov
    from guahao.bench.runner import machine

    opts = ov.OverloadOptions(database=database.value, workers=workers, admission=admission,
                              db_pool_size=db_pool_size, probe=probe, connections=connections, seconds=seconds,
                              factor=factor, timeout=timeout, keep_logs=keep_logs)
    info = machine()
    typer.echo(f"guahao bench overload: {opts.database}, {workers} worker(s), admission {admission}, "
               f"{factor:g}x for {seconds:g} s, client timeout {timeout:g} s")
    typer.echo(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']}; {info['date']}")
    log_dir = Path(tempfile.mkdtemp(prefix="guahao-bench-"))
    try:
        results = _run_async(ov.run(opts, lambda line: typer.echo(f"  . {line}", err=True), log_dir))
    finally:
        if not keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
    typer.echo("")
    typer.echo(ov.table(results))
    for r in results:
        for note in r.notes:
            typer.echo(f"note ({r.label}): {note}")
    if json_out:
        json_out.write_text(json.dumps({"options": opts.__dict__, "machine": info,
                                        "results": [r.as_dict() for r in results]}, ensure_ascii=False, indent=2))
    bad = [r for r in results if r.timeouts or r.other or r.overloaded_without_retry_after
           or r.acknowledged_in_db is False]
    if bad:
        typer.echo("FAILED: " + ", ".join(r.label for r in bad))
        raise typer.Exit(1)


@bench_app.command("bots")
def bots(
    database: Backend = typer.Option(Backend.postgresql, help="database of the service"),
    workers: int = typer.Option(2, min=1, help="uvicorn worker processes"),
    patients: int = typer.Option(500, min=1, help="P: patients per release, one hold each"),
    connections: int = typer.Option(64, min=1, help="K: the patients' connections"),
    bot_holds: int = typer.Option(10_000, min=1, help="B: the bot's holds, one account"),
    bot_connections: int = typer.Option(128, min=1, help="the bot's connections"),
    keep_logs: bool = typer.Option(False, help="keep the server's log"),
    json_out: Path | None = typer.Option(None, help="also write the figures as JSON here"),
) -> None:
    """A bot's burst of B holds from one account at release time: refused cheaply (429), and
    the other patients' p50/p99 with the burst against without it, in the same run."""
    import shutil
    import tempfile

    from guahao.bench import bots as bots_bench
    from guahao.bench.runner import machine

    opts = bots_bench.BotsOptions(database=database.value, workers=workers, patients=patients,
                                  connections=connections, bot_holds=bot_holds, bot_connections=bot_connections,
                                  keep_logs=keep_logs)
    info = machine()
    typer.echo(f"guahao bench bots: {opts.database}, {workers} worker(s), {patients} patients per release on "
               f"{connections} connections, bot {bot_holds} holds on {bot_connections} connections")
    typer.echo(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']}; {info['date']}")
    log_dir = Path(tempfile.mkdtemp(prefix="guahao-bench-"))
    try:
        figures = _run_async(bots_bench.run(opts, lambda line: typer.echo(f"  . {line}", err=True), log_dir))
    finally:
        if not keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
    typer.echo("")
    typer.echo(bots_bench.table(figures))
    typer.echo(f"acknowledged holds = live bookings: {'yes' if figures.acknowledged_in_db else 'NO'}; "
               f"bookings the bot got: {figures.bot_bookings}")
    for note in figures.notes:
        typer.echo(f"note: {note}")
    if json_out:
        json_out.write_text(json.dumps({"options": opts.__dict__, "machine": info, "results": figures.as_dict()},
                                       ensure_ascii=False, indent=2))
    crowd_codes = {c.split()[0] for c in figures.with_burst.codes}
    if not figures.acknowledged_in_db or not crowd_codes <= {"201", "409"} or figures.bot.transport_errors:
        raise typer.Exit(1)


@bench_app.command("browse")
def browse(
    database: Backend = typer.Option(Backend.postgresql, help="database of the service (and of the reference)"),
    pollers: int = typer.Option(500, min=1, help="P: clients polling once per interval, one connection each"),
    before: float = typer.Option(10.0, min=0.5, help="polling starts this many seconds before T0"),
    after: float = typer.Option(20.0, min=1.0, help="and ends this many seconds after T0"),
    interval: float = typer.Option(1.0, min=0.05, help="seconds between two polls of one client"),
    cancellations: int = typer.Option(3, min=0, help="winners that cancel after the rush (the count goes up)"),
    patients: int = typer.Option(5000, min=1, help="N: holds of the rush at T0"),
    slots: int = typer.Option(100, min=1, help="C: seats of the polled slot"),
    connections: int = typer.Option(256, min=1, help="K: connections of the rush"),
    workers: int | None = typer.Option(None, min=1, help="W: uvicorn workers (default 2, SQLite 1)"),
    references: bool = typer.Option(True, "--references/--no-references", help="also run the bare endpoint"),
    keep_logs: bool = typer.Option(False, help="keep the servers' logs and the SQLite files"),
    json_out: Path | None = typer.Option(None, help="also write the figures as JSON here"),
) -> None:
    """The browse storm: P clients refresh a doctor's and a department's availability and the
    doctor's page every second around the release while the rush runs; rate, latency, staleness."""
    from guahao.bench.browse import BrowseOptions, run
    from guahao.bench.browse_stats import table, target_lines
    from guahao.bench.report import table as rush_table
    from guahao.bench.runner import RushOptions, machine

    rush_opts = RushOptions(database=database.value, patients=patients, slots=slots, connections=connections,
                            workers=workers or (2 if database is Backend.postgresql else 1), keep_logs=keep_logs)
    opts = BrowseOptions(rush=rush_opts, pollers=pollers, before=before, after=after, interval=interval,
                         cancellations=cancellations, references=references)
    info = machine()
    typer.echo(f"guahao bench browse: {rush_opts.database}, {rush_opts.workers} worker(s), {pollers} pollers every "
               f"{interval:g} s from T0 - {before:g} s to T0 + {after:g} s; rush of {patients} holds for {slots} seats")
    typer.echo(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']}; {info['date']}")
    outcome = _run_async(run(opts, lambda line: typer.echo(f"  . {line}", err=True)))
    typer.echo("")
    typer.echo(table(outcome.results))
    typer.echo("")
    typer.echo(rush_table(outcome.rushes))
    for note in [n for r in outcome.results for n in r.notes] + outcome.notes:
        typer.echo(f"note: {note}")
    bare = next((r for r in outcome.results if r.label == "bare endpoint"), None)
    typer.echo("")
    typer.echo("targets of issue 11 (browse storm):")
    lines = target_lines(outcome.results[0], bare)
    for line in lines:
        typer.echo("  " + line)
    if json_out:
        json_out.write_text(json.dumps({"options": {**opts.__dict__, "rush": rush_opts.__dict__}, "machine": info,
                                        "targets": lines, "results": [r.as_dict() for r in outcome.results],
                                        "rushes": [r.as_dict() for r in outcome.rushes]},
                                       ensure_ascii=False, indent=2))
    if any(e.http_5xx for r in outcome.results for e in r.endpoints):
        raise typer.Exit(1)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace("_", "").split(",") if x.strip()]


@bench_app.command("scale")
def scale(
    database: Backend = typer.Option(Backend.postgresql, help="database of the service"),
    workers: str = typer.Option("1,2,4", help="worker counts, comma-separated"),
    patients: str = typer.Option("1000,5000,20000", help="crowd sizes, comma-separated"),
    slots: int = typer.Option(100, min=1, help="C: seats of the released schedule"),
    connections: int = typer.Option(256, min=1, help="K: concurrent connections"),
    references: bool = typer.Option(False, "--references/--no-references",
                                    help="also run the bare endpoint at every point (doubles the time)"),
    plot: Path | None = typer.Option(None, help="write the chart (PNG) here, e.g. docs/bench-scale.png"),
    json_out: Path | None = typer.Option(None, help="also write the figures as JSON here"),
) -> None:
    """The rush at every (workers, patients) pair: answers/s, p99 and peak memory per worker."""
    from guahao.bench import scale as scale_mod
    from guahao.bench.runner import RushOptions, machine

    base = RushOptions(database=database.value, slots=slots, connections=connections, references=references)
    info = machine()
    typer.echo(f"guahao bench scale: {base.database}, workers {workers}, patients {patients}, {slots} slots, "
               f"{connections} connections")
    typer.echo(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']}; {info['date']}")
    failed: list[tuple[int, int, str]] = []
    points = _run_async(scale_mod.scale(base, _ints(workers), _ints(patients),
                                        lambda line: typer.echo(f"  . {line}", err=True), failed))
    typer.echo("")
    typer.echo(scale_mod.table(points))
    for w, n, why in failed:
        typer.echo(f"note: {w} worker(s), {n} patients failed: {why}")
    if plot:
        scale_mod.plot(points, plot, title=f"guahao bench scale: {base.database}, {slots} slots, {connections} "
                                           f"connections; {info['cpus']} CPUs, {info['date']}")
        typer.echo(f"chart written to {plot}")
    if json_out:
        json_out.write_text(json.dumps({"machine": info, "points": [p.as_dict() for p in points],
                                        "failed": failed}, indent=2))
    if failed or any(p.http_5xx or not p.oversell_ok for p in points):
        raise typer.Exit(1)
