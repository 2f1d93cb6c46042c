"""medical records (建档) cached per person and hospital

Revision ID: 0008_hisrec
Revises: 0007_web
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0008_hisrec'
down_revision = '0007_web'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('his_records',
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hospital_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('his_patient_id', sa.String(length=64), nullable=False),
    sa.Column('card_no', sa.String(length=512), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('found_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('row_key', sa.String(length=32), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospitals.id'], name=op.f('fk_his_records_hospital_id_hospitals')),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_his_records_person_id_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_his_records')),
    sa.UniqueConstraint('person_id', 'hospital_id', name=op.f('uq_his_records_person_id_hospital_id')),
    sa.UniqueConstraint('row_key', name=op.f('uq_his_records_row_key'))
    )
    with op.batch_alter_table('his_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_his_records_hospital_id'), ['hospital_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('his_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_his_records_hospital_id'))

    op.drop_table('his_records')
