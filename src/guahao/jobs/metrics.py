"""Prometheus metrics of the job workers (exposed by /metrics of the process that runs them).

Labels are registered topics only ("unknown" otherwise) so that a stray topic cannot grow the
series without bound.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from guahao.outbox import registry

PROCESSED = Counter("guahao_jobs_processed_total", "Jobs that finished successfully", ["topic"])
FAILED = Counter("guahao_jobs_failed_total", "Job attempts that failed and were scheduled again", ["topic"])
DEAD = Counter("guahao_jobs_dead_total", "Jobs moved to the dead-letter state", ["topic"])
LEASE_LOST = Counter("guahao_jobs_lease_lost_total", "Jobs finished after another worker reclaimed them",
                     ["topic"])
DURATION = Histogram("guahao_job_duration_seconds", "Handler run time", ["topic"],
                     buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))
START_LAG = Histogram("guahao_job_start_lag_seconds", "From a message being due to a worker claiming it",
                      ["topic"], buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800))
QUEUE_LAG = Gauge("guahao_jobs_queue_lag_seconds",
                  "Age of the oldest due message at the last claim (0 when nothing was due)")
RUNNING = Gauge("guahao_jobs_running", "Jobs running in this process")


def label(topic: str) -> str:
    return topic if topic in registry.HANDLERS else "unknown"
