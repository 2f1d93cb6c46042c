"""候补 waitlist: entries, per-hospital waitlist rules, schedules.waitlist_waiting

Revision ID: 0018_waitlist
Revises: 0017_photo
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0018_waitlist'
down_revision = '0017_photo'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('waitlist_rules',
    sa.Column('hospital_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('max_entries_per_person', sa.Integer(), server_default='3', nullable=False),
    sa.Column('offer_minutes', sa.Integer(), server_default='30', nullable=False),
    sa.Column('cutoff_minutes_before_visit_day', sa.Integer(), server_default='60', nullable=False),
    sa.Column('lapse_counts_as_strike', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('quiet_from', sa.Time(), server_default='22:00:00', nullable=False),
    sa.Column('quiet_until', sa.Time(), server_default='07:00:00', nullable=False),
    sa.Column('updated_at', guahao.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('cutoff_minutes_before_visit_day BETWEEN -720 AND 2880', name=op.f('ck_waitlist_rules_cutoff')),
    sa.CheckConstraint('max_entries_per_person BETWEEN 1 AND 10', name=op.f('ck_waitlist_rules_max_entries')),
    sa.CheckConstraint('offer_minutes BETWEEN 5 AND 1440', name=op.f('ck_waitlist_rules_offer_minutes')),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'], name=op.f('fk_waitlist_rules_hospital_id_hospitals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('hospital_id', name=op.f('pk_waitlist_rules'))
    )
    op.create_table('waitlist_entries',
    sa.Column('hospital_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('schedule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('offer_booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('offers', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=60), nullable=True),
    sa.Column('cutoff_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('joined_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('offered_at', guahao.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.CheckConstraint("state <> 'offered' OR offer_booking_id IS NOT NULL", name=op.f('ck_waitlist_entries_offer_has_booking')),
    sa.CheckConstraint("state IN ('waiting', 'offered', 'fulfilled', 'lapsed', 'left', 'skipped', 'closed')", name=op.f('ck_waitlist_entries_state')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_waitlist_entries_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'], name=op.f('fk_waitlist_entries_hospital_id_hospitals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['offer_booking_id'], ['bookings.id'], name=op.f('fk_waitlist_entries_offer_booking_id_bookings')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_waitlist_entries_patient_id_patients')),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_waitlist_entries_person_id_persons')),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_waitlist_entries_schedule_id_schedules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entries')),
    sa.UniqueConstraint('offer_booking_id', name=op.f('uq_waitlist_entries_offer_booking_id'))
    )
    with op.batch_alter_table('waitlist_entries', schema=None) as batch_op:
        batch_op.create_index('ix_waitlist_entries_account', ['account_id', 'joined_at'], unique=False)
        batch_op.create_index('ix_waitlist_entries_person_state', ['person_id', 'hospital_id', 'state'], unique=False)
        batch_op.create_index('ix_waitlist_entries_schedule_state_position', ['schedule_id', 'state', 'position'], unique=False)
        batch_op.create_index('ix_waitlist_entries_state_cutoff', ['state', 'cutoff_at'], unique=False)
        batch_op.create_index('uq_waitlist_entries_schedule_person_live', ['schedule_id', 'person_id'], unique=True, sqlite_where=sa.text("state IN ('waiting', 'offered')"), postgresql_where=sa.text("state IN ('waiting', 'offered')"))
        batch_op.create_index('uq_waitlist_entries_schedule_position', ['schedule_id', 'position'], unique=True)

    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waitlist_waiting', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_column('waitlist_waiting')

    with op.batch_alter_table('waitlist_entries', schema=None) as batch_op:
        batch_op.drop_index('uq_waitlist_entries_schedule_position')
        batch_op.drop_index('uq_waitlist_entries_schedule_person_live', sqlite_where=sa.text("state IN ('waiting', 'offered')"), postgresql_where=sa.text("state IN ('waiting', 'offered')"))
        batch_op.drop_index('ix_waitlist_entries_state_cutoff')
        batch_op.drop_index('ix_waitlist_entries_schedule_state_position')
        batch_op.drop_index('ix_waitlist_entries_person_state')
        batch_op.drop_index('ix_waitlist_entries_account')

    op.drop_table('waitlist_entries')
    op.drop_table('waitlist_rules')
