"""subscribers: the language of their pages and mail

Revision ID: f2a9c4e6b1d8
Revises: c8f3a1d5e7b9
Create Date: 2026-12-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'f2a9c4e6b1d8'
down_revision = 'c8f3a1d5e7b9'
branch_labels = None
depends_on = None


def upgrade():
    # Everyone on the list so far has been written to in English.
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('locale', sa.String(length=8), nullable=False, server_default='en')
        )


def downgrade():
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_column('locale')
