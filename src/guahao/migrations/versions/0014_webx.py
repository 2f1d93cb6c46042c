"""Patient web app, the rest of issue 9: a booking's 病情描述 (encrypted), a 就诊人's visit
card number per hospital (encrypted), hospital notices, whether an account chose its language

Revision ID: 0014_webx
Revises: 0016_ops
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.crypto
import guahao.core.db

revision = '0014_webx'
down_revision = '0016_ops'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _utc():
    return guahao.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale_chosen', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table('booking_reasons',
    sa.Column('booking_id', ID, nullable=False),
    sa.Column('hospital_id', ID, nullable=False),
    sa.Column('text', guahao.core.crypto.Encrypted(length=2048), nullable=False),
    sa.Column('consent_version', sa.String(length=20), nullable=False),
    sa.Column('created_at', _utc(), nullable=False),
    sa.Column('row_key', sa.String(length=32), nullable=False),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_booking_reasons_booking_id_bookings'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'],
                            name=op.f('fk_booking_reasons_hospital_id_hospitals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_booking_reasons')),
    sa.UniqueConstraint('booking_id', name=op.f('uq_booking_reasons_booking_id')),
    sa.UniqueConstraint('row_key', name=op.f('uq_booking_reasons_row_key'))
    )
    op.create_table('patient_visit_cards',
    sa.Column('patient_id', ID, nullable=False),
    sa.Column('hospital_id', ID, nullable=False),
    sa.Column('card_number', guahao.core.crypto.Encrypted(length=512), nullable=False),
    sa.Column('created_at', _utc(), nullable=False),
    sa.Column('updated_at', _utc(), nullable=False),
    sa.Column('row_key', sa.String(length=32), nullable=False),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_visit_cards_patient_id_patients'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'],
                            name=op.f('fk_patient_visit_cards_hospital_id_hospitals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_visit_cards')),
    sa.UniqueConstraint('patient_id', 'hospital_id', name=op.f('uq_patient_visit_cards_patient_id_hospital_id')),
    sa.UniqueConstraint('row_key', name=op.f('uq_patient_visit_cards_row_key'))
    )
    op.create_index(op.f('ix_patient_visit_cards_hospital_id'), 'patient_visit_cards', ['hospital_id'], unique=False)
    op.create_table('hospital_notices',
    sa.Column('hospital_id', ID, nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('body', sa.String(length=4000), nullable=False),
    sa.Column('valid_from', _utc(), nullable=False),
    sa.Column('valid_until', _utc(), nullable=True),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.Column('created_by', ID, nullable=True),
    sa.Column('created_at', _utc(), nullable=False),
    sa.Column('updated_at', _utc(), nullable=False),
    sa.Column('removed_at', _utc(), nullable=True),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'], name=op.f('fk_hospital_notices_hospital_id_hospitals'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by'], ['staff_users.id'],
                            name=op.f('fk_hospital_notices_created_by_staff_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hospital_notices'))
    )
    op.create_index('ix_hospital_notices_hospital_valid', 'hospital_notices', ['hospital_id', 'valid_from'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_hospital_notices_hospital_valid', table_name='hospital_notices')
    op.drop_table('hospital_notices')
    op.drop_index(op.f('ix_patient_visit_cards_hospital_id'), table_name='patient_visit_cards')
    op.drop_table('patient_visit_cards')
    op.drop_table('booking_reasons')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('locale_chosen')
