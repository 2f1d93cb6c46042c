"""HIS connections and the HIS ids our catalogue, schedules, slots and bookings mirror

Revision ID: 0006_his
Revises: 0005_sec
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0006_his'
down_revision = '0005_sec'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('his_connections',
    sa.Column('hospital_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('base_url', sa.String(length=300), nullable=False),
    sa.Column('platform', sa.String(length=64), nullable=False),
    sa.Column('pool', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('timeout_ms', sa.Integer(), nullable=False),
    sa.Column('cache_ms', sa.Integer(), nullable=False),
    sa.Column('updated_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('row_key', sa.String(length=32), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.CheckConstraint('cache_ms BETWEEN 0 AND 60000', name=op.f('ck_his_connections_cache_ms')),
    sa.CheckConstraint('timeout_ms BETWEEN 100 AND 60000', name=op.f('ck_his_connections_timeout_ms')),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'], name=op.f('fk_his_connections_hospital_id_hospitals'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_his_connections')),
    sa.UniqueConstraint('hospital_id', name=op.f('uq_his_connections_hospital_id')),
    sa.UniqueConstraint('row_key', name=op.f('uq_his_connections_row_key'))
    )
    with op.batch_alter_table('departments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('his_code', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_departments_hospital_id_his_code'), ['hospital_id', 'his_code'])
    with op.batch_alter_table('doctors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('his_code', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_doctors_hospital_id_his_code'), ['hospital_id', 'his_code'])
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('his_session_id', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_schedules_hospital_id_his_session_id'), ['hospital_id', 'his_session_id'])
    with op.batch_alter_table('slots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('his_band_id', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_slots_hospital_id_pool_his_band_id'), ['hospital_id', 'pool', 'his_band_id'])
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('his_state', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('his_visit_no', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('his_patient_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('his_flag', sa.String(length=40), nullable=True))
        batch_op.create_check_constraint(
            'his_state', "his_state IS NULL OR his_state IN ('pending', 'locked', 'confirmed', 'cancelled', 'refused')")


def downgrade() -> None:
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_bookings_his_state'), type_='check')
        batch_op.drop_column('his_flag')
        batch_op.drop_column('his_patient_id')
        batch_op.drop_column('his_visit_no')
        batch_op.drop_column('his_state')
    for table, columns in (('slots', ('pool', 'his_band_id')), ('schedules', ('his_session_id',)),
                           ('doctors', ('his_code',)), ('departments', ('his_code',))):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"uq_{table}_hospital_id_{'_'.join(columns)}"), type_='unique')
            batch_op.drop_column(columns[-1])
    op.drop_table('his_connections')
