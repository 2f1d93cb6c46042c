"""A hospital's 候补 rules as a frozen snapshot (defaults when the hospital never set them),
and the times they give: the queue's cutoff and an offer's pay deadline."""
from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core import audit
from guahao.waitlist.models import WaitlistRules

FIELDS = ("enabled", "max_entries_per_person", "offer_minutes", "cutoff_minutes_before_visit_day",
          "lapse_counts_as_strike", "quiet_from", "quiet_until")


@dataclasses.dataclass(frozen=True)
class Rules:
    enabled: bool = True
    max_entries_per_person: int = 3
    offer_minutes: int = 30
    cutoff_minutes_before_visit_day: int = 60  # 23:00 the day before
    lapse_counts_as_strike: bool = True
    quiet_from: dt.time = dt.time(22, 0)
    quiet_until: dt.time = dt.time(7, 0)

    def cutoff(self, visit_date: dt.date, zone: ZoneInfo) -> dt.datetime:
        """When the queue of a visit on `visit_date` closes (UTC)."""
        midnight = dt.datetime.combine(visit_date, dt.time(0, 0), tzinfo=zone)
        return (midnight - dt.timedelta(minutes=self.cutoff_minutes_before_visit_day)).astimezone(dt.UTC)

    def _quiet(self, local: dt.time) -> bool:
        if self.quiet_from <= self.quiet_until:
            return self.quiet_from <= local < self.quiet_until
        return local >= self.quiet_from or local < self.quiet_until

    def offer_deadline(self, now: dt.datetime, zone: ZoneInfo, pay_cutoff: dt.datetime) -> dt.datetime:
        """The pay window of an offer made `now`: `offer_minutes`, counted from the end of the
        quiet hours when it is made in them (an offer at 02:00 must not lapse while the
        patient sleeps), never past `pay_cutoff` (online booking closes then)."""
        local = now.astimezone(zone)
        start = now
        if self._quiet(local.timetz().replace(tzinfo=None)):
            wake = dt.datetime.combine(local.date(), self.quiet_until, tzinfo=zone)
            if wake <= local:
                wake += dt.timedelta(days=1)
            start = wake.astimezone(dt.UTC)
        return min(start + dt.timedelta(minutes=self.offer_minutes), pay_cutoff)


async def get_rules(session: AsyncSession, hospital_id: int) -> Rules:
    row = await session.scalar(select(WaitlistRules).where(WaitlistRules.hospital_id == hospital_id))
    if row is None:
        return Rules()
    return Rules(**{name: getattr(row, name) for name in FIELDS})


async def do_set_rules(session: AsyncSession, hospital_id: int, *, now: dt.datetime, **values) -> Rules:
    """Store a hospital's rules (tests and the back office); unknown names are refused."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown waitlist rules {sorted(unknown)}")
    row = await session.get(WaitlistRules, hospital_id, with_for_update=True)
    if row is None:
        row = WaitlistRules(hospital_id=hospital_id, **dataclasses.asdict(Rules()))
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = now
    await session.flush()
    return await get_rules(session, hospital_id)


async def do_update_rules(session: AsyncSession, hospital_id: int, values: dict, *, now: dt.datetime,
                          staff_id: int | None) -> Rules:
    """Staff change the hospital's rules (the API's PUT and the back-office page): only the
    fields given change; audited with the values set. Entries keep the cutoff they joined under."""
    rules = await do_set_rules(session, hospital_id, now=now, **values)
    await audit.do_record(session, now=now, action="waitlist_rules.update", object_type="hospital",
                          object_id=hospital_id, hospital_id=hospital_id, staff_id=staff_id,
                          detail={k: str(v) for k, v in values.items()})
    return rules
