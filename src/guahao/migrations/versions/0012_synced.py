"""HIS synced mode: the hospital rule "use the HIS visit number" (就诊序号 from the HIS on the
booking and in the SMS)

Revision ID: 0012_synced
Revises: 0011_staff
"""
import sqlalchemy as sa
from alembic import op

revision = '0012_synced'
down_revision = '0011_staff'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hospital_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('use_his_visit_no', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('hospital_rules', schema=None) as batch_op:
        batch_op.drop_column('use_his_visit_no')
