#!/usr/bin/env python3
"""Verify a guahao draw (摇号) from its public audit record, trusting nothing of guahao.

Usage:
    python3 tools/verify_draw.py audit.json          # a saved GET /api/v1/schedules/{id}/draw/audit
    python3 tools/verify_draw.py https://host/api/v1/schedules/7/draw/audit
    python3 tools/verify_draw.py audit.json --receipt 3f2a...   # where is my entry?

Standard library only, on purpose: it imports nothing from guahao, so a patient, a journalist
or a notary can run it. It checks, and says which check failed:
1. the revealed secret hashes to the commitment published before the draw (SHA-256);
2. the root is SHA-256 over the sorted receipts joined by "\\n" (the entry list is the one ranked);
3. the seed is HMAC-SHA256(key = secret bytes, message = "<root>:<draw id>");
4. the ranks are the receipts sorted by HMAC-SHA256(key = seed bytes, message = receipt), ties by receipt;
5. the allocation follows the ranks: nobody after the first entry that lost for want of a seat
   won, the winners are at most the seats, and while seats were left every entry either won
   or was skipped with a reason (an ineligible winner).
Exit status 0 when every check passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import urllib.request


def _load(source: str) -> dict:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as answer:
            return json.load(answer)
    with open(source, encoding="utf-8") as handle:
        return json.load(handle)


def recompute(record: dict) -> list[str]:
    """The receipts in draw order, from the record's secret and receipts alone."""
    secret = bytes.fromhex(record["secret"])
    receipts = [e["receipt"] for e in record["entries"]]
    root = hashlib.sha256("\n".join(sorted(receipts)).encode()).hexdigest()
    seed = hmac.new(secret, f"{root}:{record['draw_id']}".encode(), hashlib.sha256).digest()
    return sorted(receipts, key=lambda r: (hmac.new(seed, r.encode(), hashlib.sha256).hexdigest(), r))


def check(record: dict) -> list[str]:
    """Every failed check, in words (empty: the draw is what it claims)."""
    problems: list[str] = []
    secret = bytes.fromhex(record["secret"])
    if hashlib.sha256(secret).hexdigest() != record["commitment"]:
        problems.append("the revealed secret does not match the published commitment")
    receipts = [e["receipt"] for e in record["entries"]]
    if len(set(receipts)) != len(receipts):
        problems.append("a receipt appears twice")
    root = hashlib.sha256("\n".join(sorted(receipts)).encode()).hexdigest()
    if root != record["root"]:
        problems.append("the root does not match the receipts")
    seed = hmac.new(secret, f"{root}:{record['draw_id']}".encode(), hashlib.sha256).hexdigest()
    if seed != record["seed"]:
        problems.append("the seed does not follow from the secret and the root")
    order = recompute(record)
    ranks = {e["receipt"]: e["rank"] for e in record["entries"]}
    wrong = [r for i, r in enumerate(order, 1) if ranks.get(r) != i]
    if wrong:
        problems.append(f"{len(wrong)} entries do not have the rank the seed gives them")
    problems += _check_allocation(record, order)
    return problems


def _check_allocation(record: dict, order: list[str]) -> list[str]:
    if record.get("status") != "allocated":
        return []
    by_receipt = {e["receipt"]: e for e in record["entries"]}
    problems, seats_gone, won = [], False, 0
    for receipt in order:
        entry = by_receipt[receipt]
        outcome = entry["outcome"]
        if outcome == "won":
            won += 1
            if seats_gone:
                problems.append(f"rank {entry['rank']} won after the seats had run out")
        elif outcome == "lost":
            seats_gone = True
        elif outcome == "skipped":
            if not entry.get("reason"):
                problems.append(f"rank {entry['rank']} was skipped without a reason")
        else:
            problems.append(f"rank {entry['rank']} has no outcome")
    if record.get("seats") is not None and won > record["seats"]:
        problems.append(f"{won} winners for {record['seats']} seats")
    if record.get("seats") is not None and seats_gone and won < record["seats"] and any(
            by_receipt[r]["reason"] == "no_seat" for r in order):
        problems.append(f"entries lost for want of a seat while only {won} of {record['seats']} seats were given")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="audit JSON file or URL")
    parser.add_argument("--receipt", help="show this entry's rank and outcome")
    args = parser.parse_args(argv)
    record = _load(args.source)
    problems = check(record)
    print(f"draw {record['draw_id']}: {len(record['entries'])} entries, {record.get('seats')} seats")
    if args.receipt:
        mine = next((e for e in record["entries"] if e["receipt"] == args.receipt), None)
        print("receipt not in this draw" if mine is None else
              f"your entry: rank {mine['rank']}, {mine['outcome']}" + (f" ({mine['reason']})" if mine["reason"] else ""))
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        print("OK: commitment, root, seed, ranks and allocation all check out")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
