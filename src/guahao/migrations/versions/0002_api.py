"""hospital rule: booking SMS also to the patient's own phone

Revision ID: 0002_api
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_api'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hospital_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sms_to_patient_phone', sa.Boolean(), server_default=sa.true(),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('hospital_rules', schema=None) as batch_op:
        batch_op.drop_column('sms_to_patient_phone')
