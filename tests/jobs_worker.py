"""`guahao worker` for the process tests, with a short lease and poll interval from JOBTEST_*
variables so that a killed worker's job is picked up again within the test's patience."""
from __future__ import annotations

import asyncio
import datetime as dt
import os

from guahao.config import Settings
from guahao.jobs.runner import JobConfig, run_worker

if __name__ == "__main__":
    settings = Settings()
    config = JobConfig.from_settings(settings).replace(
        lease=dt.timedelta(seconds=float(os.environ.get("JOBTEST_LEASE_SECONDS", "60"))),
        poll_seconds=float(os.environ.get("JOBTEST_POLL_SECONDS", "0.1")),
    )
    asyncio.run(run_worker(settings, config=config))
