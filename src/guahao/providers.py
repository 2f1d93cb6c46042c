"""The outside-world ports of one process (SMS, payments, face check), built from settings."""
from __future__ import annotations

from typing import Any

from guahao.config import Settings


def build_providers(settings: Settings) -> dict[str, Any]:
    from guahao.accounts import sms
    from guahao.booking import queries as booking_queries
    from guahao.his import ports as his_ports
    from guahao.his import realtime as his_realtime
    from guahao.his import records as his_records
    from guahao.notifications import port as notifications_port
    from guahao.patients import face_check
    from guahao.payments import provider as payment_provider

    # Settings already refused the development stand-ins where they must not run
    # (config.unsafe_providers); this only builds what was chosen.
    sms_port, notifier = {
        "recording": (sms.RecordingSms, notifications_port.RecordingNotifier),
        "console": (sms.ConsoleSms, notifications_port.ConsoleNotifier),
        "none": (sms.UnconfiguredSms, notifications_port.UnconfiguredNotifier),
    }[settings.sms_provider]
    return {
        "sms": sms_port(),
        # booking messages carry our dedupe key (out_id) so a gateway can drop a repeat
        "notifications": notifier(),
        "face_check": face_check.build(settings.face_check_provider),
        "payments": payment_provider.build(settings),
        # not an outside system: booking answering a question of a feature below it
        # (patients.LiveBookings, scheduling.ScheduleBookings, catalog.his_mode.HospitalBookings)
        "bookings": booking_queries,
        # the HIS side answering the domain's ports: catalog.his_mode.HisConnections and
        # booking.records_step.MedicalRecords (建档 look-up and record cache)
        "his_connections": his_ports,
        "his_records": his_records,
        # realtime mode: booking.his_hold.HisHolds (the HIS decides every hold) and
        # scheduling.availability.HisAvailability (remaining numbers from the HIS, cached)
        "his_holds": his_realtime.RealtimeHolds(resolve_tries=settings.his_lock_resolve_tries),
        "his_availability": his_realtime.RealtimeAvailability(),
    }
