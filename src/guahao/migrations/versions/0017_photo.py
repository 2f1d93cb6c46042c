"""Doctors' photos

Revision ID: 0017_photo
Revises: 0014_webx
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0017_photo'
down_revision = '0014_webx'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('doctor_photos',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('doctor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('media_type', sa.String(length=40), nullable=False),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('updated_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['doctor_id'], ['doctors.id'], name=op.f('fk_doctor_photos_doctor_id_doctors'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_doctor_photos')),
    sa.UniqueConstraint('doctor_id', name=op.f('uq_doctor_photos_doctor_id'))
    )


def downgrade() -> None:
    op.drop_table('doctor_photos')
