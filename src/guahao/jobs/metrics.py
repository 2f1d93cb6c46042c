"""Prometheus metrics of the job workers (/metrics of `serve`, or `guahao worker --metrics-port`).

Labels are registered topics only ("unknown" otherwise) so that a stray topic cannot grow the
series without bound.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from guahao.core import metrics as core_metrics
from guahao.outbox import registry

PROCESSED = Counter("guahao_jobs_processed_total", "Jobs that finished successfully", ["topic"])
FAILED = Counter("guahao_jobs_failed_total", "Job attempts that failed and were scheduled again", ["topic"])
DEAD = core_metrics.DEAD_LETTERS  # a business number too (dead letters), so it lives with those
LEASE_LOST = Counter("guahao_jobs_lease_lost_total", "Jobs finished after another worker reclaimed them",
                     ["topic"])
DURATION = Histogram("guahao_job_duration_seconds", "Handler run time", ["topic"],
                     buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))
START_LAG = Histogram("guahao_job_start_lag_seconds", "From a message being due to a worker claiming it",
                      ["topic"], buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800))
QUEUE_LAG = Gauge("guahao_jobs_queue_lag_seconds",
                  "Age of the oldest due message at the last claim (0 when nothing was due)",
                  multiprocess_mode="livemax")
# several processes (uvicorn workers with in-process jobs) add up; dead ones drop out
RUNNING = Gauge("guahao_jobs_running", "Jobs running", multiprocess_mode="livesum")


def label(topic: str) -> str:
    return topic if topic in registry.HANDLERS else "unknown"
