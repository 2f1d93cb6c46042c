"""FHIR facade: partner systems (OAuth2 client credentials)

Revision ID: 0020_fhir
Revises: 0018_waitlist
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.db

revision = '0020_fhir'
down_revision = '0018_waitlist'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fhir_clients',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('scopes', sa.String(length=400), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fhir_clients')),
    sa.UniqueConstraint('client_id', name=op.f('uq_fhir_clients_client_id'))
    )


def downgrade() -> None:
    op.drop_table('fhir_clients')
