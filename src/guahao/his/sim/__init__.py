"""his-sim: a simulated hospital information system (HIS), run as its own process
(`guahao his-sim`), with its own SQLite database and a signed JSON-over-HTTP API.

It stands in for the hospital's side of issue 8: departments, doctors and dated clinic
sessions whose time bands have an on-site pool and platform pools; locks that expire by
themselves, confirmation with a visit number, cancellation, patient records, window sales,
out-of-band changes by hospital staff, and fault switches. See docs/HIS_SIM.md.
"""
from __future__ import annotations

from typing import Any

from guahao.his.sim.app import create_app
from guahao.his.sim.signing import admin_token, platform_key, sign_request

__all__ = ["admin_token", "create_app", "main", "platform_key", "sign_request"]


def main(host: str = "127.0.0.1", port: int = 8200, db_path: str = "./his-sim.db", key: str = "his-sim-dev-key",
         *, faults: dict[str, Any] | None = None, seed: bool = False, log_level: str = "warning") -> None:
    """Serve the simulator until interrupted; `seed` loads the demo hospital first (wiping the
    database), `faults` sets the fault switches at start."""
    import datetime as dt

    import uvicorn

    app = create_app(db_path=db_path, key=key, faults=faults)
    if seed:
        from guahao.his.sim import seed as demo
        from guahao.his.sim.app import HOSPITAL_TZ

        store = app.app.state.store
        store.reset()
        store.load(demo.demo(dt.datetime.now(HOSPITAL_TZ).date()))
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
