"""The re-encryption job: rewrite every encrypted value under the current data key and every
lookup hash under the current index key, so an old key can be retired (docs/KEYS.md).

Online and safe to interrupt. It walks each table in primary-key batches; each batch is one
short transaction, committed before the next, so a stop loses at most one batch and a rerun
(idempotent: rows already under the current keys are left alone) finishes the work. Every
write is conditional on the value read (`WHERE id = :id AND col = :old`): a value the
application rewrote meanwhile is already under the current key and is not overwritten with
a stale one. Each column is updated on its own for the same reason.

This is a cross-cutting maintenance job over ciphertext columns, like a migration: it reads
the tables that hold `Encrypted` columns through the metadata, and takes the hash
derivations from the owning features' services so they stay defined in one place.

Locks: a batch takes row locks on the rows it rewrites, in id order, and holds them only
until its commit; no network I/O happens inside. Persons are locked only by their hash
update, never together with seats or bookings.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import structlog
from sqlalchemy import String, Table, and_, func, or_, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts import service as accounts_service
from guahao.core import crypto
from guahao.core.db import Database
from guahao.models import Base
from guahao.patients import service as patients_service

log = structlog.get_logger("guahao.keys")


@dataclass
class RotationReport:
    """What a pass found (dry run) or did. Counts only: no values, no hashes."""

    dry_run: bool
    # (column label, key id or "v1") -> number of values found under it, before rewriting
    values_by_kid: collections.Counter = field(default_factory=collections.Counter)
    values_rewritten: int = 0  # re-sealed under the current data key (or due, in a dry run)
    hashes_rewritten: int = 0  # re-hashed under the current index key (or due, in a dry run)
    changed_meanwhile: int = 0  # the application wrote the value first: already current
    unreadable: list[tuple[str, int]] = field(default_factory=list)  # (label, row id)
    hash_conflicts: list[tuple[str, int]] = field(default_factory=list)  # (table, row id)
    persons_without_patient: int = 0  # no plaintext to re-hash from; see docs/KEYS.md

    @property
    def pending(self) -> int:
        """Work a dry run found still due (0 after a complete real pass)."""
        return self.values_rewritten + self.hashes_rewritten if self.dry_run else 0

    @property
    def clean(self) -> bool:
        return self.pending == 0 and not self.unreadable and not self.hash_conflicts

    def lines(self) -> list[str]:
        verb = "due" if self.dry_run else "rewritten"
        out = [f"values {verb}: {self.values_rewritten}", f"lookup hashes {verb}: {self.hashes_rewritten}"]
        out += [f"  {label} under {kid}: {n}" for (label, kid), n in sorted(self.values_by_kid.items())]
        if self.changed_meanwhile:
            out.append(f"rewritten by the application meanwhile: {self.changed_meanwhile}")
        if self.unreadable:
            out.append(f"UNREADABLE values: {len(self.unreadable)} (first: "
                       + ", ".join(f"{label} row {row}" for label, row in self.unreadable[:10]) + ")")
        if self.hash_conflicts:
            out.append(f"HASH CONFLICTS (two rows for one person or number): {len(self.hash_conflicts)} (first: "
                       + ", ".join(f"{t} row {row}" for t, row in self.hash_conflicts[:10]) + ")")
        if self.persons_without_patient:
            out.append(f"persons without any patient row (not re-hashable): {self.persons_without_patient}")
        return out


def _raw(column):
    """The stored token itself, bypassing `Encrypted`'s processing."""
    return type_coerce(column, String())


def encrypted_tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if crypto.encrypted_columns(t)]


async def reencrypt(db: Database, *, batch_size: int = 200, dry_run: bool = False,
                    values_only: bool = False) -> RotationReport:
    """One pass over every encrypted table, then over the persons' identity hashes.

    `values_only` visits only rows with a value not under the current data key (the database
    filters them by prefix) and leaves hashes alone: the cheap pass for when no index key
    is being rotated, since a hash can only be checked against the decrypted value."""
    report = RotationReport(dry_run=dry_run)
    for table in encrypted_tables():
        after = 0
        while after is not None:
            after = await _value_batch(db, table, after, batch_size, report, values_only=values_only)
    after = 0
    while after is not None and not values_only:
        after = await _person_batch(db, after, batch_size, report)
    log.info("keys_reencrypt_pass", dry_run=dry_run, values=report.values_rewritten,
             hashes=report.hashes_rewritten, unreadable=len(report.unreadable),
             conflicts=len(report.hash_conflicts), changed_meanwhile=report.changed_meanwhile)
    return report


def _unit(db: Database, report: RotationReport):
    return db.read() if report.dry_run else db.begin()


async def _value_batch(db: Database, table: Table, after: int, size: int, report: RotationReport, *,
                       values_only: bool = False) -> int | None:
    cipher = crypto.cipher()
    columns = crypto.encrypted_columns(table)
    stmt = (select(table.c.id, table.c.row_key, *[_raw(c).label(c.name) for c in columns])
            .where(table.c.id > after).order_by(table.c.id).limit(size))
    if values_only:
        prefix = f"v2:{cipher.data_current}:"  # compared exactly: LIKE would read "_" in a kid as a wildcard
        stmt = stmt.where(or_(*[and_(c.isnot(None), func.substr(_raw(c), 1, len(prefix)) != prefix)
                                for c in columns]))
    async with _unit(db, report) as session:
        rows = (await session.execute(stmt)).mappings().all()
        for row in rows:
            plain: dict[str, str] = {}
            for column in columns:
                token = row[column.name]
                if token is None:
                    continue
                label = column.type.label
                report.values_by_kid[(label, cipher.token_kid(token) or "v1")] += 1
                try:
                    plain[column.name] = cipher.open(token, crypto.RowValue(label, row["row_key"]))
                except crypto.UnreadableCiphertext:
                    report.unreadable.append((label, row["id"]))
                    continue
                if cipher.is_current(token):
                    continue
                report.values_rewritten += 1
                if not report.dry_run:
                    sealed = cipher.seal(plain[column.name], crypto.RowValue(label, row["row_key"]))
                    await _guarded_update(session, table, row["id"], column, token, sealed, report)
            if table.name == "accounts" and "phone" in plain and not values_only:
                await _rehash(session, table, table.c.phone_hash, row["id"],
                              accounts_service.phone_hash(plain["phone"]), report)
            if table.name == "patients" and "phone" in plain and not values_only:
                # rows older than the column have none yet: the pass fills it (fill_missing)
                await _rehash(session, table, table.c.phone_hash, row["id"],
                              patients_service.phone_hash(plain["phone"]), report, fill_missing=True)
    return rows[-1]["id"] if rows else None


async def _guarded_update(session: AsyncSession, table: Table, row_id: int, column, old: str, new: str,
                          report: RotationReport) -> None:
    result = await session.execute(
        update(table).where(table.c.id == row_id, _raw(column) == old).values({column.name: _raw(new)})
    )
    if result.rowcount != 1:
        report.changed_meanwhile += 1


async def _rehash(session: AsyncSession, table: Table, column, row_id: int, expected: str,
                  report: RotationReport, *, fill_missing: bool = False) -> None:
    stored = await session.scalar(select(column).where(table.c.id == row_id))
    if stored == expected or (stored is None and not fill_missing):
        return
    report.hashes_rewritten += 1
    if report.dry_run:
        return
    try:
        # a savepoint: on PostgreSQL a refused UPDATE would otherwise abort the whole batch
        async with session.begin_nested():
            result = await session.execute(
                update(table).where(table.c.id == row_id, column == stored).values({column.name: expected}))
    except IntegrityError:
        # another row already holds this person's current hash: two rows for one identity,
        # which only a rotation done out of order (docs/KEYS.md) can create. Left for a person.
        report.hash_conflicts.append((table.name, row_id))
        log.warning("keys_hash_conflict", table=table.name, row_id=row_id)
        return
    if result.rowcount != 1:
        report.changed_meanwhile += 1


async def _person_batch(db: Database, after: int, size: int, report: RotationReport) -> int | None:
    persons = Base.metadata.tables["persons"]
    patients = Base.metadata.tables["patients"]
    cipher = crypto.cipher()
    async with _unit(db, report) as session:
        ids = list((await session.scalars(
            select(persons.c.id).where(persons.c.id > after).order_by(persons.c.id).limit(size))).all())
        if not ids:
            return None
        # any patient row of the person holds the plaintext identity (every one the same)
        sources = (await session.execute(
            select(patients.c.person_id, patients.c.row_key, patients.c.id_type, _raw(patients.c.id_number))
            .where(patients.c.person_id.in_(ids)).order_by(patients.c.person_id, patients.c.id)
        )).all()
        first: dict[int, tuple] = {}
        for person_id, row_key, id_type, token in sources:
            first.setdefault(person_id, (row_key, id_type, token))
        for person_id in ids:
            if person_id not in first:
                report.persons_without_patient += 1
                continue
            row_key, id_type, token = first[person_id]
            try:
                number = cipher.open(token, crypto.RowValue(patients.c.id_number.type.label, row_key))
            except crypto.UnreadableCiphertext:
                continue  # counted by the value pass over patients
            await _rehash(session, persons, persons.c.identity_hash, person_id,
                          patients_service.identity_hash(id_type, number), report)
    return ids[-1]
