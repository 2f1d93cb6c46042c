"""`guahao bench scale`: the rush at several worker counts and crowd sizes, and its chart.

Each (workers, patients) point is one `bench rush` (fresh database, fresh server, guahao
phase only unless references are asked for), one after the other. The chart shows answers/s,
p99 and the peak resident memory per worker against the number of patients, one line per
worker count, so that a reader sees where the curves bend.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from guahao.bench.report import RushFigures
from guahao.bench.runner import RushOptions, run


@dataclass
class ScalePoint:
    workers: int
    patients: int
    answers_per_s: float
    all_answered_s: float
    winner_p99_ms: float | None
    sold_out_p99_ms: float | None
    http_5xx: int
    oversell_ok: bool
    worker_peak_rss_mib: list[float]
    bare_answers_per_s: float | None = None
    winners: int | None = None
    winners_in_db: int | None = None  # live bookings of the slot after the rush
    transport_errors: int = 0
    other: dict[str, int] | None = None

    @classmethod
    def of(cls, workers: int, patients: int, g: RushFigures, bare: RushFigures | None) -> ScalePoint:
        return cls(workers=workers, patients=patients, answers_per_s=g.answers_per_s,
                   all_answered_s=g.all_answered_s, winner_p99_ms=g.winner_p99_ms,
                   sold_out_p99_ms=g.sold_out_p99_ms, http_5xx=g.http_5xx, oversell_ok=g.oversell_ok,
                   worker_peak_rss_mib=g.worker_peak_rss_mib,
                   bare_answers_per_s=bare.answers_per_s if bare else None, winners=g.winners,
                   winners_in_db=g.winners_in_db,
                   transport_errors=g.transport_errors, other=g.other)

    def as_dict(self) -> dict:
        return asdict(self)


async def scale(base: RushOptions, workers: list[int], patients: list[int], echo: Callable[[str], None],
                failed: list[tuple[int, int, str]] | None = None) -> list[ScalePoint]:
    """Every point in turn; a point whose run raised is left out and listed in `failed`."""
    failed = [] if failed is None else failed
    points = []
    for w in workers:
        for n in patients:
            echo(f"rush: {w} worker(s), {n} patients")
            try:
                outcome = await run(replace(base, workers=w, patients=n), echo)
            except Exception as exc:  # one point failing (a server that never came up) loses only it
                echo(f"rush: {w} worker(s), {n} patients FAILED: {type(exc).__name__}: {str(exc)[:300]}")
                failed.append((w, n, f"{type(exc).__name__}: {str(exc)[:300]}"))
                continue
            g = outcome.results[0]
            for note in g.notes + outcome.notes:
                echo(f"  note: {note[:400]}")
            bare = next((r for r in outcome.results if r.label == "bare endpoint"), None)
            points.append(ScalePoint.of(w, n, g, bare))
    return points


def table(points: list[ScalePoint]) -> str:
    head = ["workers", "patients", "answers/s", "all answered s", "winners p99 ms", "sold-out p99 ms", "5xx",
            "transport errors", "winners: answers / DB", "peak RSS per worker MiB", "bare answers/s"]
    rows = [[str(p.workers), f"{p.patients:,}", f"{p.answers_per_s:,.0f}", f"{p.all_answered_s:.2f}",
             "-" if p.winner_p99_ms is None else f"{p.winner_p99_ms:,.0f}",
             "-" if p.sold_out_p99_ms is None else f"{p.sold_out_p99_ms:,.0f}", str(p.http_5xx),
             str(p.transport_errors), f"{p.winners} / {p.winners_in_db}" + ("" if p.oversell_ok else " FAILED"), " / ".join(f"{m:.0f}" for m in p.worker_peak_rss_mib) or "-",
             "-" if p.bare_answers_per_s is None else f"{p.bare_answers_per_s:,.0f}"] for p in points]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head] + rows)


def plot(points: list[ScalePoint], path: Path, *, title: str) -> None:
    """A PNG with three panels against patients: answers/s, p99 (sold-out solid, winners dashed),
    peak RSS per worker. One colour per worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_p99, ax_mem) = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    for w in sorted({p.workers for p in points}):
        mine = sorted((p for p in points if p.workers == w), key=lambda p: p.patients)
        xs = [p.patients for p in mine]
        label = f"{w} worker{'s' if w > 1 else ''}"
        line, = ax_rate.plot(xs, [p.answers_per_s for p in mine], marker="o", label=label)
        colour = line.get_color()
        if any(p.bare_answers_per_s for p in mine):
            ax_rate.plot(xs, [p.bare_answers_per_s for p in mine], marker="x", linestyle=":", color=colour,
                         label=f"bare endpoint, {label}")
        ax_p99.plot(xs, [p.sold_out_p99_ms for p in mine], marker="o", color=colour, label=f"sold-out, {label}")
        ax_p99.plot(xs, [p.winner_p99_ms for p in mine], marker="s", linestyle="--", color=colour,
                    label=f"winners, {label}")
        ax_mem.plot(xs, [max(p.worker_peak_rss_mib, default=0) for p in mine], marker="o", color=colour,
                    label=label)
    sizes = sorted({p.patients for p in points})
    for ax, ylabel in ((ax_rate, "answers / s"), (ax_p99, "p99 latency, ms"), (ax_mem, "peak RSS per worker, MiB")):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("patients (holds at T0)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    ax_p99.set_yscale("log")
    ax_rate.set_ylim(bottom=0)
    ax_mem.set_ylim(bottom=0)
    fig.suptitle(title, fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
