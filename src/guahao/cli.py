"""The `guahao` command line."""
from __future__ import annotations

import asyncio
import json
import logging

import typer

from guahao.config import get_settings

app = typer.Typer(help="guahao: online hospital appointment registration", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _add_bench() -> None:
    from guahao.bench.cli import bench_app

    app.add_typer(bench_app, name="bench", help="Benchmarks (release rush)")


_add_bench()
app.add_typer(__import__("guahao.keys.cli", fromlist=["keys_app"]).keys_app, name="keys")  # docs/KEYS.md
__import__("guahao.ops.cli", fromlist=["register"]).register(app)  # backup, restore, check


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default head); says each step it applied."""
    from guahao import migrations_api

    applied: list[str] = []

    def report(step: str) -> None:
        applied.append(step)
        typer.echo(f"migrated {step}", err=True)

    migrations_api.upgrade(get_settings().database_url, revision, on_step=report)
    if not applied:
        typer.echo("database schema already up to date", err=True)


@db_app.command("downgrade")
def db_downgrade(revision: str = "-1") -> None:
    """Revert migrations down to REVISION (default one step)."""
    from guahao import migrations_api

    migrations_api.downgrade(get_settings().database_url, revision)


@db_app.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    from guahao import migrations_api

    migrations_api.check(get_settings().database_url)
    typer.echo("models and migrations agree")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          migrate: bool = typer.Option(True, help="run `db upgrade` first")) -> None:
    """Run the API and pages (and, on the embedded default, the jobs in-process).

    Children (the embedded payment sandbox) stop with this process on SIGTERM, SIGINT and
    SIGHUP, and on Linux even when it is SIGKILLed. With --workers > 1, SIGHUP keeps uvicorn's
    meaning (replace the workers) and the sandbox keeps running."""
    import os
    import signal

    import uvicorn

    from guahao.core import metrics_dir
    from guahao.core.children import SUPERVISOR_ENV, ChildGroup
    from guahao.core.logging import configure_logging

    # before anything imports prometheus_client, so every worker writes to the shared files
    metrics_path, made_here = metrics_dir.prepare(os.environ.get(metrics_dir.ENV))
    os.environ[metrics_dir.ENV] = metrics_path
    _derive_base_url(host, port)
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    settings = get_settings()
    # uvicorn's supervisor logs through the same formatter and scrubber as the workers
    configure_logging(json=settings.log_json, log_file=settings.log_file, level=logging.WARNING)
    children = ChildGroup()

    def clean_up() -> None:
        children.stop_all()
        if made_here:
            metrics_dir.remove(metrics_path)

    def stop(signum, _frame) -> None:
        clean_up()
        # then end the way the signal means (a service manager sees "stopped by SIGTERM")
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def hang_up(_signum, _frame) -> None:
        # uvicorn (one worker) knows SIGTERM, not SIGHUP: turn it into its graceful stop
        os.kill(os.getpid(), signal.SIGTERM)

    # uvicorn puts back these handlers after its graceful stop and raises the signal again;
    # without them the default action ended the process before `finally` could stop children
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hang_up)
    try:
        if migrate:
            db_upgrade()
        _start_embedded_paysim(children)
        _start_embedded_his_sim(children)
        uvicorn.run("guahao.asgi:app", host=host, port=port, workers=workers, log_level="warning",
                    proxy_headers=False, log_config=None)
    finally:
        clean_up()


def _derive_base_url(host: str, port: int) -> None:
    """Payment callbacks and the cashier's return link are built from base_url: unless it was
    set explicitly (environment or .env), it is where this `serve` listens."""
    import os

    if "base_url" in get_settings().model_fields_set:
        return
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in reachable:
        reachable = f"[{reachable}]"
    # the environment, so that uvicorn's worker processes see it too
    os.environ["GUAHAO_BASE_URL"] = f"http://{reachable}:{port}"
    get_settings.cache_clear()


def _start_embedded_paysim(children):
    """On the embedded default the payment sandbox runs beside the service as its own
    process (it is a separate system in production: the provider), started here so that the
    README's single run command gives a working payment flow. A port already taken is
    refused: it is most likely a sandbox left over from an earlier run, with another key and
    ledger, and talking to it would look like a working setup that is not."""
    import sys
    from urllib.parse import urlparse

    from guahao.core.children import port_in_use, wait_for_port

    settings = get_settings()
    target = urlparse(settings.paysim_url)
    if not (settings.paysim_embedded and settings.env == "development" and settings.payment_provider == "paysim"
            and target.hostname in ("127.0.0.1", "localhost")):
        return None
    port = target.port or 80
    if port_in_use(target.hostname, port):
        typer.echo(f"port {port} of the payment sandbox ({settings.paysim_url}) is already taken, probably by a "
                   "sandbox left over from an earlier `guahao serve`; stop that process, or set "
                   "GUAHAO_PAYSIM_EMBEDDED=false to use what listens there", err=True)
        raise typer.Exit(1)
    typer.echo(f"payment sandbox (paysim) on {settings.paysim_url}")
    proc = children.start([sys.executable, "-m", "guahao.cli", "paysim", "--host", target.hostname,
                           "--port", str(port)])
    if not wait_for_port(proc, target.hostname, port):
        typer.echo("the payment sandbox did not start", err=True)
        raise typer.Exit(1)
    return proc


def _start_embedded_his_sim(children):
    """On the embedded default, the HIS simulator runs beside the service as its own process
    when a hospital's HIS connection points at it (the demo's synced and realtime hospitals,
    `guahao seed --demo`). A new simulator database is seeded with the demo HIS (a week of
    sessions from today, docs/HIS_SIM.md) and the demo patient's visit card; an existing one
    is kept, with the orders our bookings refer to. A taken port is refused, as for paysim."""
    import os
    import sys
    from pathlib import Path
    from urllib.parse import urlparse

    from sqlalchemy.exc import DBAPIError

    from guahao.core.children import port_in_use, wait_for_port
    from guahao.core.db import create_database
    from guahao.his.ports import hospitals_connected_to

    settings = get_settings()
    target = urlparse(settings.his_sim_url)
    if not (settings.his_sim_embedded and settings.env == "development"
            and target.hostname in ("127.0.0.1", "localhost")):
        return None

    async def connected() -> list[int]:
        db = create_database(settings.database_url, pool_size=1)
        try:
            return await hospitals_connected_to(db, settings.his_sim_url)
        except DBAPIError:  # not migrated yet (`serve --no-migrate`): nobody uses it
            return []
        finally:
            await db.dispose()

    hospitals = asyncio.run(connected())
    if not hospitals:
        return None
    port = target.port or 80
    if port_in_use(target.hostname, port):
        typer.echo(f"port {port} of the HIS simulator ({settings.his_sim_url}) is already taken, probably by a "
                   "simulator left over from an earlier `guahao serve`; stop that process, or set "
                   "GUAHAO_HIS_SIM_EMBEDDED=false to use what listens there", err=True)
        raise typer.Exit(1)
    fresh = not Path(settings.his_sim_db_path).exists()
    typer.echo(f"HIS simulator (his-sim) on {settings.his_sim_url} for hospitals {hospitals}"
               + (" (new database, seeded)" if fresh else ""))
    proc = children.start([sys.executable, "-m", "guahao.cli", "his-sim", "--host", target.hostname,
                           "--port", str(port), "--db-path", settings.his_sim_db_path,
                           *(["--seed"] if fresh else [])],
                          env={**os.environ, "GUAHAO_HIS_SIM_KEY": settings.his_sim_key})
    if not wait_for_port(proc, target.hostname, port):
        typer.echo("the HIS simulator did not start", err=True)
        raise typer.Exit(1)
    if fresh:
        from guahao.demo.seed import seed_his_sim_records

        asyncio.run(seed_his_sim_records(settings))
    return proc


@app.command()
def paysim(host: str = "127.0.0.1", port: int = 8100, db_path: str = "./paysim.db",
           retry_scale: float = typer.Option(1.0, help="shorten the notification retry schedule")) -> None:
    """Run the sandbox payment provider (its own process, ledger and cashier page)."""
    from guahao.payments.paysim import main

    main(host=host, port=port, db_path=db_path, key=get_settings().paysim_key, retry_scale=retry_scale)


@app.command("his-sim")
def his_sim(host: str = "127.0.0.1", port: int = 8200, db_path: str = "./his-sim.db",
            key: str = typer.Option("his-sim-dev-key", envvar="GUAHAO_HIS_SIM_KEY", help="master signing key"),
            seed: bool = typer.Option(False, help="wipe the database and load the demo hospital"),
            latency_ms: int = 0, error_rate: float = 0.0, down: bool = False, hang: bool = False,
            ack_lost: bool = False, clock_skew_s: float = 0.0) -> None:
    """Run the simulated hospital information system (its own process and database; docs/HIS_SIM.md)."""
    from guahao.his.sim import main

    main(host=host, port=port, db_path=db_path, key=key, seed=seed,
         faults={"latency_ms": latency_ms, "error_rate": error_rate, "down": down, "hang": hang,
                 "ack_lost": ack_lost, "clock_skew_s": clock_skew_s})


@app.command()
def worker(metrics_port: int | None = typer.Option(None, help="serve /metrics on this port"),
           metrics_host: str = typer.Option("127.0.0.1", help="address of the metrics port")) -> None:
    """Run background jobs as their own process (production topology)."""
    from guahao.jobs.runner import run_worker

    if metrics_port is not None:
        from guahao.core import metrics

        metrics.start_http_server(metrics_port, metrics_host)
    asyncio.run(run_worker(get_settings()))


@app.command()
def seed(demo: bool = typer.Option(False, "--demo", help="load the demo data set"),
         if_empty: bool = typer.Option(False, "--if-empty", help="do nothing when hospitals exist")) -> None:
    """Load data. `--demo` loads hospitals, doctors, schedules, a demo account and staff."""
    if not demo:
        raise typer.BadParameter("only --demo is supported")
    from guahao.core.logging import configure_logging
    from guahao.demo.seed import run_seed

    configure_logging(level=logging.WARNING)

    asyncio.run(run_seed(get_settings(), if_empty=if_empty))


@app.command("create-staff")
def create_staff(username: str, role: str, password: str = typer.Option(..., prompt=True, hide_input=True),
                 hospital_id: int | None = None, display_name: str | None = None) -> None:
    """Create a staff user (platform_operator, hospital_admin, scheduler, front_desk)."""
    from guahao.core.errors import GuahaoError
    from guahao.staff.service import create_staff_cli

    try:
        staff_id = asyncio.run(create_staff_cli(get_settings(), username=username, role=role, password=password,
                                                hospital_id=hospital_id, display_name=display_name or username))
    except GuahaoError as exc:
        typer.echo(f"{exc.code}: {exc.message('zh-CN')} / {exc.message('en')}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created staff user {username} (id {staff_id})")


@app.command("create-fhir-client")
def create_fhir_client(name: str, scopes: str = "system/Slot.read system/Schedule.read") -> None:
    """Register a partner system of the FHIR facade (docs/FHIR.md); prints its client id and
    secret once (only the secret's hash is kept)."""
    from guahao.fhir.auth import create_client_cli

    try:
        client_id, secret = asyncio.run(create_client_cli(get_settings(), name=name, scopes=scopes))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"client_id={client_id}\nclient_secret={secret}")


@app.command()
def openapi() -> None:
    """Print the OpenAPI document."""
    from guahao.app import create_app

    typer.echo(json.dumps(create_app().openapi(), ensure_ascii=False, indent=2))



if __name__ == "__main__":
    app()
