"""The platform's maintenance switch

Revision ID: 0016_ops
Revises: 0012_synced
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0016_ops'
down_revision = '0012_synced'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('maintenance_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('until', guahao.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.String(length=200), nullable=True),
    sa.Column('set_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('set_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['set_by'], ['staff_users.id'], name=op.f('fk_maintenance_windows_set_by_staff_users'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_windows'))
    )


def downgrade() -> None:
    op.drop_table('maintenance_windows')
