"""payments: hourly counts of rejected notifications

Revision ID: 0004_pay
Revises: 0003_crypto
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0004_pay'
down_revision = '0003_crypto'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('payment_notification_rejections',
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=30), nullable=False),
    sa.Column('hour', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_notification_rejections'))
    )
    with op.batch_alter_table('payment_notification_rejections', schema=None) as batch_op:
        batch_op.create_index('uq_payment_notification_rejections_bucket', ['provider', 'reason', 'hour'],
                              unique=True)


def downgrade() -> None:
    with op.batch_alter_table('payment_notification_rejections', schema=None) as batch_op:
        batch_op.drop_index('uq_payment_notification_rejections_bucket')
    op.drop_table('payment_notification_rejections')
