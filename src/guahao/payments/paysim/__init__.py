"""paysim: the sandbox payment provider, run as its own process (`guahao paysim`).

It behaves like WeChat Pay / Alipay where it matters to us: its own ledger, a cashier page,
signed notifications delivered asynchronously and retried until acknowledged, a query API,
an idempotent refund API and a daily bill, plus switches that drop, delay or duplicate
notifications and fail refunds.
"""
from __future__ import annotations

from guahao.payments.paysim.app import api_token, create_app

__all__ = ["api_token", "create_app", "main"]


def main(host: str = "127.0.0.1", port: int = 8100, db_path: str = "./paysim.db", key: str = "paysim-dev-key",
         *, retry_scale: float = 1.0, public_url: str | None = None, log_level: str = "warning") -> None:
    """Serve the sandbox until interrupted. `retry_scale` shortens the notification retry
    schedule (0.01 turns 15 s into 0.15 s) for tests and demos."""
    import uvicorn

    app = create_app(db_path=db_path, key=key, retry_scale=retry_scale,
                     public_url=public_url or f"http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
