"""webhook intake: refused requests and seen event ids

POST /webhooks/<provider> records every request it refuses (provider, reason, remote address,
the start of the body) and the provider event ids it has accepted, so a replay is refused.

Revision ID: 2388d141df01
Revises: a6e9afc658a9
Create Date: 2026-12-04 16:03:11.888895

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '2388d141df01'
down_revision = 'a6e9afc658a9'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('webhook_events_seen',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=30), nullable=False),
    sa.Column('event_key', sa.String(length=255), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events_seen')),
    sa.UniqueConstraint('provider', 'event_key', name=op.f('uq_webhook_events_seen_provider_event_key'))
    )
    op.create_table('webhook_refusals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=30), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('remote_addr', sa.String(length=64), nullable=False),
    sa.Column('body_excerpt', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_refusals'))
    )
    with op.batch_alter_table('webhook_refusals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_refusals_received_at'), ['received_at'], unique=False)



def downgrade():
    with op.batch_alter_table('webhook_refusals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_refusals_received_at'))

    op.drop_table('webhook_refusals')
    op.drop_table('webhook_events_seen')
