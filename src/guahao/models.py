"""Every table, imported in one place so metadata (and Alembic) sees all of them."""
import guahao.catalog.notices
import guahao.draw.models
import guahao.fhir.models
import guahao.his.models
import guahao.his.records
import guahao.notifications.models
import guahao.payments.models  # noqa: F401
from guahao.accounts.models import Account, AuthSession, Consent, SmsCode  # noqa: F401
from guahao.booking.models import Booking, BookingEvent, BookingReason, Restriction  # noqa: F401
from guahao.catalog.models import Department, Doctor, FeeRule, Hospital, HospitalRules  # noqa: F401
from guahao.core.audit import AuditEntry  # noqa: F401
from guahao.core.db import Base  # noqa: F401
from guahao.core.idempotency import IdempotencyKey  # noqa: F401
from guahao.outbox.models import OutboxMessage  # noqa: F401
from guahao.patients.models import Patient, Person, VisitCard  # noqa: F401
from guahao.scheduling.models import Schedule, ScheduleTemplate, Slot, SlotPosition  # noqa: F401
from guahao.staff.models import StaffLoginThrottle, StaffUser  # noqa: F401
from guahao.waitlist.models import WaitlistEntry, WaitlistRules  # noqa: F401
