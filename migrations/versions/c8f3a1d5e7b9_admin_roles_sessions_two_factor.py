"""admins: roles, one row per signed-in session, two-factor sign-in; API token scopes

Every admin that exists before this revision becomes an owner, and every API token gets the
`admin` scope: both keep exactly the powers they had. Sessions signed in before the upgrade
carry no session key, so they end and their admins sign in once more.

Revision ID: c8f3a1d5e7b9
Revises: a036c7134b69
Create Date: 2026-12-10 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c8f3a1d5e7b9'
down_revision = 'a036c7134b69'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('role', sa.String(length=16), nullable=False, server_default='owner')
        )
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_admins_role'), "role IN ('viewer', 'editor', 'owner')"
        )
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.alter_column('role', existing_type=sa.String(length=16), server_default=None)

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('scope', sa.String(length=8), nullable=False, server_default='admin')
        )
        batch_op.create_check_constraint(
            op.f('ck_api_tokens_scope'), "scope IN ('read', 'write', 'admin')"
        )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('scope', existing_type=sa.String(length=8), server_default=None)

    op.create_table(
        'admin_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('admin_id', sa.Integer(), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['admin_id'], ['admins.id'],
            name=op.f('fk_admin_sessions_admin_id_admins'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_sessions')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_admin_sessions_key_hash')),
    )
    op.create_index(
        op.f('ix_admin_sessions_admin_id'), 'admin_sessions', ['admin_id'], unique=False
    )
    op.create_table(
        'admin_recovery_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('admin_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=255), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['admin_id'], ['admins.id'],
            name=op.f('fk_admin_recovery_codes_admin_id_admins'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_recovery_codes')),
    )
    op.create_index(
        op.f('ix_admin_recovery_codes_admin_id'), 'admin_recovery_codes', ['admin_id'],
        unique=False,
    )


def downgrade():
    op.drop_index(op.f('ix_admin_recovery_codes_admin_id'), table_name='admin_recovery_codes')
    op.drop_table('admin_recovery_codes')
    op.drop_index(op.f('ix_admin_sessions_admin_id'), table_name='admin_sessions')
    op.drop_table('admin_sessions')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_tokens_scope'), type_='check')
        batch_op.drop_column('scope')
    with op.batch_alter_table('admins', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_admins_role'), type_='check')
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('role')
