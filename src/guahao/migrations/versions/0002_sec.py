"""staff login lockout counters

Revision ID: 0002_sec
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import guahao.core.db


revision = '0002_sec'
down_revision = '0001'
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
