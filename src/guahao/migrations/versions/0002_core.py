"""booking core: per-key replay window, rule-aware I3 index, kept cancel deadline, new rules

Revision ID: 0002_core
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0002_core'
down_revision = '0001'
branch_labels = None
depends_on = None

_LIVE = sa.text("state IN ('held', 'confirmed', 'checked_in', 'completed')")


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replay_until", guahao.core.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("hospital_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("strike_cancellations", sa.String(length=20), server_default="all",
                                      nullable=False))
        batch_op.add_column(sa.Column("sms_to_patient_phone", sa.Boolean(), server_default=sa.true(),
                                      nullable=False))
        batch_op.create_check_constraint(op.f("ck_hospital_rules_strike_cancellations"),
                                         "strike_cancellations IN ('all', 'paid_only', 'none')")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedupe_day", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("cancel_deadline", guahao.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("strike_cancellations", sa.String(length=20), nullable=True))
    # existing bookings were all made under the rule being on
    op.execute("UPDATE bookings SET dedupe_day = visit_date")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index("uq_bookings_person_department_day_live", sqlite_where=_LIVE, postgresql_where=_LIVE)
        batch_op.create_index("uq_bookings_person_department_day_live",
                              ["person_id", "hospital_id", "department_id", "dedupe_day"], unique=True,
                              sqlite_where=_LIVE, postgresql_where=_LIVE)


def downgrade() -> None:
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index("uq_bookings_person_department_day_live", sqlite_where=_LIVE, postgresql_where=_LIVE)
        batch_op.create_index("uq_bookings_person_department_day_live",
                              ["person_id", "hospital_id", "department_id", "visit_date"], unique=True,
                              sqlite_where=_LIVE, postgresql_where=_LIVE)
        batch_op.drop_column("strike_cancellations")
        batch_op.drop_column("cancel_deadline")
        batch_op.drop_column("dedupe_day")
    with op.batch_alter_table("hospital_rules", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_hospital_rules_strike_cancellations"), type_="check")
        batch_op.drop_column("sms_to_patient_phone")
        batch_op.drop_column("strike_cancellations")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("replay_until")
