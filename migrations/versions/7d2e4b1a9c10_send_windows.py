"""send windows: the shared sending-rate counter

Revision ID: 7d2e4b1a9c10
Revises: 3c5cf161457c
Create Date: 2026-11-25 18:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7d2e4b1a9c10'
down_revision = '3c5cf161457c'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('send_windows',
    sa.Column('window', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('window', name=op.f('pk_send_windows'))
    )


def downgrade():
    op.drop_table('send_windows')
