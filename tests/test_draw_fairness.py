"""Statistical fairness of the draw's ranking, with fixed seeds (deterministic, never flaky).

The ranking under test is the product's own (`guahao.draw.fairness`); the database plays no
part in it (the end-to-end rush in test_draw_rush.py runs it through the API on both
databases). α = 10⁻³ throughout; the chi-square critical values are from the tables.
"""
from __future__ import annotations

import hashlib
import itertools

from guahao.draw import fairness

CHI2_CRITICAL_DF9 = 27.877  # α = 0.001
CHI2_CRITICAL_DF23 = 49.728


def _secret(round_no: int) -> str:
    return hashlib.sha256(f"fixed-seed-{round_no}".encode()).hexdigest()


def _draw(round_no: int, n: int) -> list[int]:
    """Entrants 0..n-1 in arrival order; the draw order of this round (fixed secret and receipts)."""
    receipts = [hashlib.sha256(f"{round_no}:{i}".encode()).hexdigest()[:32] for i in range(n)]
    by_receipt = {r: i for i, r in enumerate(receipts)}
    secret = _secret(round_no)
    seed = fairness.seed(secret, fairness.entries_root(receipts), round_no)
    return [by_receipt[r] for r in fairness.ranked(seed, receipts)]


def _fifo(round_no: int, n: int) -> list[int]:
    return list(range(n))  # first come, first served: arrival order is the order


def _chi_square_by_arrival_decile(order_of, *, n: int = 1000, seats: int = 100, rounds: int = 300) -> float:
    wins = [0] * 10
    for r in range(rounds):
        for entrant in order_of(r, n)[:seats]:
            wins[entrant * 10 // n] += 1
    expected = rounds * seats / 10
    return sum((w - expected) ** 2 / expected for w in wins)


def test_win_rate_by_arrival_decile_is_uniform_in_draw_mode():
    """1,000 entrants in a known arrival order (the first decile are the bots), 100 seats, 300
    fixed seeds: wins per arrival decile pass a chi-square homogeneity test (df 9)."""
    assert _chi_square_by_arrival_decile(_draw) < CHI2_CRITICAL_DF9


def test_the_same_test_fails_in_fifo_mode():
    """Negative control: first come takes every seat to the first decile; the test sees it."""
    assert _chi_square_by_arrival_decile(_fifo) > 100 * CHI2_CRITICAL_DF9


def test_every_permutation_of_four_entrants_is_equally_likely():
    counts = dict.fromkeys(itertools.permutations(range(4)), 0)
    rounds = 24_000
    for r in range(rounds):
        counts[tuple(_draw(r, 4))] += 1
    expected = rounds / 24
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < CHI2_CRITICAL_DF23, counts


def test_changing_one_receipt_changes_the_order():
    receipts = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(50)]
    secret = _secret(1)
    before = fairness.ranked(fairness.seed(secret, fairness.entries_root(receipts), 1), receipts)
    receipts[7] = "0" * 32
    after = fairness.ranked(fairness.seed(secret, fairness.entries_root(receipts), 1), receipts)
    common = [r for r in before if r in after]
    assert common != [r for r in after if r in before]  # the whole order moved, not only one entry
