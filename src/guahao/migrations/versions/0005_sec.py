"""staff login lockout counters

Revision ID: 0005_sec
Revises: 0004_pay
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0005_sec'
down_revision = '0004_pay'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_login_throttles',
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', guahao.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('username', name=op.f('pk_staff_login_throttles'))
    )


def downgrade() -> None:
    op.drop_table('staff_login_throttles')
