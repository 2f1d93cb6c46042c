"""The `guahao` command line."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Optional

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


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default head)."""
    from guahao import migrations_api

    migrations_api.upgrade(get_settings().database_url, revision)


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
    """Run the API and pages (and, on the embedded default, the jobs in-process)."""
    import uvicorn

    if migrate:
        db_upgrade()
    sandbox = _start_embedded_paysim()
    try:
        uvicorn.run("guahao.asgi:app", host=host, port=port, workers=workers, log_level="warning",
                    proxy_headers=True)
    finally:
        if sandbox is not None:
            sandbox.terminate()
            sandbox.wait(timeout=10)


def _start_embedded_paysim():
    """On the embedded default the payment sandbox runs beside the service as its own
    process (it is a separate system in production: the provider), started here so that the
    README's single run command gives a working payment flow."""
    import subprocess
    import sys
    from urllib.parse import urlparse

    settings = get_settings()
    target = urlparse(settings.paysim_url)
    if not (settings.paysim_embedded and settings.env == "development" and settings.payment_provider == "paysim"
            and target.hostname in ("127.0.0.1", "localhost")):
        return None
    typer.echo(f"payment sandbox (paysim) on {settings.paysim_url}")
    return subprocess.Popen([sys.executable, "-m", "guahao.cli", "paysim", "--host", target.hostname,
                             "--port", str(target.port or 80)])


@app.command()
def paysim(host: str = "127.0.0.1", port: int = 8100, db_path: str = "./paysim.db",
           retry_scale: float = typer.Option(1.0, help="shorten the notification retry schedule")) -> None:
    """Run the sandbox payment provider (its own process, ledger and cashier page)."""
    from guahao.payments.paysim import main

    main(host=host, port=port, db_path=db_path, key=get_settings().paysim_key, retry_scale=retry_scale)


@app.command()
def worker() -> None:
    """Run background jobs as their own process (production topology)."""
    from guahao.jobs.runner import run_worker

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
                 hospital_id: Optional[int] = None, display_name: Optional[str] = None) -> None:
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


@app.command()
def openapi() -> None:
    """Print the OpenAPI document."""
    from guahao.app import create_app

    typer.echo(json.dumps(create_app().openapi(), ensure_ascii=False, indent=2))



if __name__ == "__main__":
    app()
