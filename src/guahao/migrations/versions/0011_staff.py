"""The back office: a hospital's clinic hours, the patients' phone lookup hash, staff TOTP,
walk-ins (bookings and patients without an account)

Revision ID: 0011_staff
Revises: 0008_hisrec
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.crypto
import guahao.core.db

revision = '0011_staff'
down_revision = '0008_hisrec'
branch_labels = None
depends_on = None

CLINIC_COLUMNS = ('morning_opens', 'morning_closes', 'afternoon_opens', 'afternoon_closes', 'evening_opens',
                  'evening_closes')


def upgrade() -> None:
    op.create_table('staff_totp',
    sa.Column('staff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('secret', guahao.core.crypto.Encrypted(length=512), nullable=False),
    sa.Column('created_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', guahao.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_step', sa.BigInteger(), nullable=True),
    sa.Column('row_key', sa.String(length=32), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_staff_totp_staff_id_staff_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_totp')),
    sa.UniqueConstraint('row_key', name=op.f('uq_staff_totp_row_key')),
    sa.UniqueConstraint('staff_id', name=op.f('uq_staff_totp_staff_id'))
    )
    with op.batch_alter_table('hospital_rules', schema=None) as batch_op:
        for name in CLINIC_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Time(), nullable=True))
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_hash', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_patients_phone_hash'), ['phone_hash'], unique=False)
        batch_op.alter_column('account_id', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                              nullable=True)
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.alter_column('account_id', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                              nullable=True)


def downgrade() -> None:
    # walk-ins have no account: they cannot be kept by the older schema
    op.execute("DELETE FROM booking_events WHERE booking_id IN (SELECT id FROM bookings WHERE account_id IS NULL)")
    op.execute("UPDATE slot_positions SET booking_id = NULL WHERE booking_id IN "
               "(SELECT id FROM bookings WHERE account_id IS NULL)")
    op.execute("DELETE FROM bookings WHERE account_id IS NULL")
    op.execute("DELETE FROM patients WHERE account_id IS NULL")
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.alter_column('account_id', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                              nullable=False)
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.alter_column('account_id', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                              nullable=False)
        batch_op.drop_index(batch_op.f('ix_patients_phone_hash'))
        batch_op.drop_column('phone_hash')
    with op.batch_alter_table('hospital_rules', schema=None) as batch_op:
        for name in reversed(CLINIC_COLUMNS):
            batch_op.drop_column(name)
    op.drop_table('staff_totp')
