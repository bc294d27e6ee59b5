"""subscribers: an index for address-prefix search

Revision ID: 5b8e1f3c2a47
Revises: b4e8d1f0a2c3
Create Date: 2026-11-26 02:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5b8e1f3c2a47'
down_revision = 'b4e8d1f0a2c3'
branch_labels = None
depends_on = None


def upgrade():
    # On PostgreSQL text_pattern_ops lets LIKE 'prefix%' use the index whatever the collation.
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.create_index(
            'ix_subscribers_email_prefix', ['email'], unique=False,
            postgresql_ops={'email': 'text_pattern_ops'},
        )


def downgrade():
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_index('ix_subscribers_email_prefix')
