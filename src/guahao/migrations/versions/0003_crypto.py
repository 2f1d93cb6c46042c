"""row keys for encrypted rows: the associated data that binds a ciphertext to its row

Revision ID: 0003_crypto
Revises: 0002_core

Existing rows get a random row key here; their values stay in the v1 format (no associated
data), which the application still reads, until `guahao keys reencrypt` rewrites them as v2.
Downgrading drops the row keys: values written as v2 meanwhile are then unreadable by the
older code, so re-encrypting backwards is not offered (restore a backup instead).
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_crypto'
down_revision = '0002_core'
branch_labels = None
depends_on = None

TABLES = ('accounts', 'patients')


def _random_key_sql(dialect: str) -> str:
    if dialect == 'postgresql':
        return "replace(gen_random_uuid()::text, '-', '')"
    return 'lower(hex(randomblob(16)))'


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('row_key', sa.String(length=32), nullable=True))
        op.execute(f'UPDATE {table} SET row_key = {_random_key_sql(dialect)} WHERE row_key IS NULL')
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('row_key', existing_type=sa.String(length=32), nullable=False)
            batch_op.create_unique_constraint(batch_op.f(f'uq_{table}_row_key'), ['row_key'])


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'uq_{table}_row_key'), type_='unique')
            batch_op.drop_column('row_key')
