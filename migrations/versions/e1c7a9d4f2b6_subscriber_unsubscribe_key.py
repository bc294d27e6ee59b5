"""subscribers: an unsubscribe key that outlives address changes

Unsubscribe links used to carry the subscriber's nonce, which an address change replaces, so
every mail sent before the change lost its one-click unsubscribe. They now carry a key of their
own that is never replaced. Each existing row's key starts as its current nonce: every
unsubscribe link that worked before the upgrade still works after it.

Revision ID: e1c7a9d4f2b6
Revises: 9e6a2f4c8b15
Create Date: 2026-12-04 15:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e1c7a9d4f2b6'
down_revision = '9e6a2f4c8b15'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unsubscribe_key', sa.String(length=64), nullable=True))
    op.execute("UPDATE subscribers SET unsubscribe_key = nonce")
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.alter_column('unsubscribe_key', existing_type=sa.String(length=64), nullable=False)


def downgrade():
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_column('unsubscribe_key')
