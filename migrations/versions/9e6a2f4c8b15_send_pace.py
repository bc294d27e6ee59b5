"""send pace: the shared next sending slot replaces the per-second send windows

Revision ID: 9e6a2f4c8b15
Revises: 5b8e1f3c2a47
Create Date: 2026-12-04 15:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9e6a2f4c8b15'
down_revision = '5b8e1f3c2a47'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('send_pace',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('next_slot_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_pace'))
    )
    op.drop_table('send_windows')


def downgrade():
    op.create_table('send_windows',
    sa.Column('window', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('window', name=op.f('pk_send_windows'))
    )
    op.drop_table('send_pace')
