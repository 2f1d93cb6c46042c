"""Release by draw (摇号放号): draws, their entries, release modes

Revision ID: 0019_draw
Revises: 0020_fhir
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0019_draw'
down_revision = '0020_fhir'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('draws',
    sa.Column('hospital_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('schedule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('opens_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('release_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closes_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('result_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('commitment', sa.String(length=64), nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('root', sa.String(length=64), nullable=True),
    sa.Column('seed', sa.String(length=64), nullable=True),
    sa.Column('seats', sa.Integer(), nullable=True),
    sa.Column('created_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ranked_at', guahao.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('allocated_at', guahao.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.CheckConstraint("status IN ('open', 'ranked', 'allocated', 'cancelled')", name=op.f('ck_draws_status')),
    sa.CheckConstraint('opens_at <= release_at AND release_at < closes_at AND closes_at <= result_at', name=op.f('ck_draws_timeline')),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'], name=op.f('fk_draws_hospital_id_hospitals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_draws_schedule_id_schedules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draws')),
    sa.UniqueConstraint('schedule_id', name=op.f('uq_draws_schedule_id'))
    )
    with op.batch_alter_table('draws', schema=None) as batch_op:
        batch_op.create_index('ix_draws_status_result_at', ['status', 'result_at'], unique=False)

    op.create_table('release_mode_settings',
    sa.Column('hospital_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('department_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('schedule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('mode', sa.String(length=10), nullable=False),
    sa.Column('updated_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.CheckConstraint("mode IN ('fifo', 'draw')", name=op.f('ck_release_mode_settings_mode')),
    sa.CheckConstraint('(department_id IS NULL) <> (schedule_id IS NULL)', name=op.f('ck_release_mode_settings_one_subject')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_release_mode_settings_department_id_departments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'], name=op.f('fk_release_mode_settings_hospital_id_hospitals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_release_mode_settings_schedule_id_schedules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_release_mode_settings'))
    )
    with op.batch_alter_table('release_mode_settings', schema=None) as batch_op:
        batch_op.create_index('ix_release_mode_settings_hospital', ['hospital_id'], unique=False)
        batch_op.create_index('uq_release_mode_settings_department', ['department_id'], unique=True, sqlite_where=sa.text('department_id IS NOT NULL'), postgresql_where=sa.text('department_id IS NOT NULL'))
        batch_op.create_index('uq_release_mode_settings_schedule', ['schedule_id'], unique=True, sqlite_where=sa.text('schedule_id IS NOT NULL'), postgresql_where=sa.text('schedule_id IS NOT NULL'))

    op.create_table('draw_entries',
    sa.Column('draw_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hospital_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('patient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('receipt', sa.String(length=32), nullable=False),
    sa.Column('waitlist_opt_in', sa.Boolean(), nullable=False),
    sa.Column('arrived_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.String(length=40), nullable=True),
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('visit_no', sa.Integer(), nullable=True),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.CheckConstraint("outcome IS NULL OR outcome IN ('won', 'lost', 'skipped')", name=op.f('ck_draw_entries_outcome')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_draw_entries_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_draw_entries_booking_id_bookings'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['draw_id'], ['draws.id'], name=op.f('fk_draw_entries_draw_id_draws'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'], name=op.f('fk_draw_entries_hospital_id_hospitals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_draw_entries_patient_id_patients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_draw_entries_person_id_persons'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draw_entries')),
    sa.UniqueConstraint('draw_id', 'person_id', name=op.f('uq_draw_entries_draw_id_person_id')),
    sa.UniqueConstraint('draw_id', 'receipt', name=op.f('uq_draw_entries_draw_id_receipt'))
    )
    with op.batch_alter_table('draw_entries', schema=None) as batch_op:
        batch_op.create_index('ix_draw_entries_account_id', ['account_id'], unique=False)
        batch_op.create_index('ix_draw_entries_draw_rank', ['draw_id', 'rank'], unique=False)

    with op.batch_alter_table('hospital_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('release_mode', sa.String(length=10), server_default='fifo', nullable=False))
        batch_op.add_column(sa.Column('draw_window_seconds', sa.Integer(), server_default='30', nullable=False))
        batch_op.add_column(sa.Column('draw_prequeue_minutes', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_check_constraint('release_mode', "release_mode IN ('fifo', 'draw')")
        batch_op.create_check_constraint('draw_window_seconds', 'draw_window_seconds BETWEEN 10 AND 60')
        batch_op.create_check_constraint('draw_prequeue_minutes', 'draw_prequeue_minutes BETWEEN 0 AND 60')

    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('release_mode', sa.String(length=10), server_default='fifo', nullable=False))
        batch_op.create_check_constraint('release_mode', "release_mode IN ('fifo', 'draw', 'drawn')")



def downgrade() -> None:
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_constraint('release_mode', type_='check')
        batch_op.drop_column('release_mode')

    with op.batch_alter_table('hospital_rules', schema=None) as batch_op:
        for name in ('release_mode', 'draw_window_seconds', 'draw_prequeue_minutes'):
            batch_op.drop_constraint(name, type_='check')
        batch_op.drop_column('draw_prequeue_minutes')
        batch_op.drop_column('draw_window_seconds')
        batch_op.drop_column('release_mode')

    with op.batch_alter_table('draw_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_draw_entries_draw_rank')
        batch_op.drop_index('ix_draw_entries_account_id')

    op.drop_table('draw_entries')
    with op.batch_alter_table('release_mode_settings', schema=None) as batch_op:
        batch_op.drop_index('uq_release_mode_settings_schedule', sqlite_where=sa.text('schedule_id IS NOT NULL'), postgresql_where=sa.text('schedule_id IS NOT NULL'))
        batch_op.drop_index('uq_release_mode_settings_department', sqlite_where=sa.text('department_id IS NOT NULL'), postgresql_where=sa.text('department_id IS NOT NULL'))
        batch_op.drop_index('ix_release_mode_settings_hospital')

    op.drop_table('release_mode_settings')
    with op.batch_alter_table('draws', schema=None) as batch_op:
        batch_op.drop_index('ix_draws_status_result_at')

    op.drop_table('draws')
