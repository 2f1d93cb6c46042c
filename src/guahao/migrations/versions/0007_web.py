"""patient web app: consents given by account holders (PIPL); how a payment was chosen;
a hospital's booking entrance (department tree, or 普通号 / 专家号 first); a patient's optional
e-mail, address and medical history (encrypted; the history with its own consent)

Revision ID: 0007_web
Revises: 0006_his
"""
import sqlalchemy as sa
from alembic import op

import guahao.core.crypto
import guahao.core.db

revision = '0007_web'
down_revision = '0006_his'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_consents',
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('version', sa.String(length=20), nullable=False),
    sa.Column('consented_at', guahao.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_consents_account_id_accounts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_consents'))
    )
    with op.batch_alter_table('account_consents', schema=None) as batch_op:
        batch_op.create_index('ix_account_consents_account_id_kind', ['account_id', 'kind'], unique=False)
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', guahao.core.crypto.Encrypted(length=512), nullable=True))
        batch_op.add_column(sa.Column('address', guahao.core.crypto.Encrypted(length=1024), nullable=True))
        batch_op.add_column(sa.Column('medical_history', guahao.core.crypto.Encrypted(length=2048), nullable=True))
        batch_op.add_column(sa.Column('health_consent_at', guahao.core.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('hospitals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entrance', sa.String(length=20), server_default='department', nullable=False))
        batch_op.create_check_constraint(op.f('ck_hospitals_entrance'), "entrance IN ('department', 'registration_level')")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=10), nullable=True))
        batch_op.create_check_constraint(op.f('ck_payments_method'), "method IS NULL OR method IN ('wechat', 'alipay', 'card')")


def downgrade() -> None:
    with op.batch_alter_table('patients', schema=None) as batch_op:
        for column in ('health_consent_at', 'medical_history', 'address', 'email'):
            batch_op.drop_column(column)
    with op.batch_alter_table('hospitals', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_hospitals_entrance'), type_='check')
        batch_op.drop_column('entrance')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payments_method'), type_='check')
        batch_op.drop_column('method')
    with op.batch_alter_table('account_consents', schema=None) as batch_op:
        batch_op.drop_index('ix_account_consents_account_id_kind')
    op.drop_table('account_consents')
