"""delivery indexes for claiming and enqueueing at scale

Claims walk partial indexes (each sending digest's due rows, other due mail, leases), so sent
rows and paused digests cost them nothing. Enqueueing a digest writes four indexes instead of
six: the digest's unique key now leads with the subscriber and replaces the subscriber index,
and the alerts' unique key covers alert rows only. The dashboard's index gains the kind, so the
counts (which leave out test sends) are read from the index alone.

Revision ID: b4e8d1f0a2c3
Revises: 7d2e4b1a9c10
Create Date: 2026-11-26 02:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b4e8d1f0a2c3'
down_revision = '7d2e4b1a9c10'
branch_labels = None
depends_on = None

DUE_DIGEST = "status = 'queued' AND kind = 'digest'"
DUE_MAIL = "status = 'queued' AND kind <> 'digest'"
LEASED = "status = 'claimed'"
ALERTS = "film_id IS NOT NULL"


def _where(condition):
    return {
        'postgresql_where': sa.text(condition),
        'sqlite_where': sa.text(condition),
    }


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_status_next_attempt_at')
        batch_op.drop_index('ix_deliveries_subscriber_id')
        batch_op.drop_index('ix_deliveries_digest_id_status')
        batch_op.drop_constraint('uq_deliveries_digest_id_subscriber_id', type_='unique')
        batch_op.drop_constraint('uq_deliveries_film_id_subscriber_id', type_='unique')
        batch_op.create_unique_constraint(
            op.f('uq_deliveries_subscriber_id_digest_id'), ['subscriber_id', 'digest_id']
        )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deliveries_digest_id_status_kind', ['digest_id', 'status', 'kind'], unique=False
        )
        batch_op.create_index(
            'uq_deliveries_film_id_subscriber_id',
            ['film_id', 'subscriber_id'],
            unique=True,
            **_where(ALERTS),
        )
        batch_op.create_index(
            'ix_deliveries_due_digest',
            ['digest_id', 'next_attempt_at', 'id'],
            unique=False,
            **_where(DUE_DIGEST),
        )
        batch_op.create_index(
            'ix_deliveries_due_mail', ['next_attempt_at', 'id'], unique=False, **_where(DUE_MAIL)
        )
        batch_op.create_index(
            'ix_deliveries_leased', ['lease_until', 'id'], unique=False, **_where(LEASED)
        )


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_leased')
        batch_op.drop_index('ix_deliveries_due_mail')
        batch_op.drop_index('ix_deliveries_due_digest')
        batch_op.drop_index('uq_deliveries_film_id_subscriber_id')
        batch_op.drop_index('ix_deliveries_digest_id_status_kind')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_deliveries_subscriber_id_digest_id'), type_='unique')
        batch_op.create_unique_constraint(
            op.f('uq_deliveries_film_id_subscriber_id'), ['film_id', 'subscriber_id']
        )
        batch_op.create_unique_constraint(
            op.f('uq_deliveries_digest_id_subscriber_id'), ['digest_id', 'subscriber_id']
        )
        batch_op.create_index('ix_deliveries_subscriber_id', ['subscriber_id'], unique=False)
        batch_op.create_index('ix_deliveries_digest_id_status', ['digest_id', 'status'], unique=False)
        batch_op.create_index(
            'ix_deliveries_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False
        )
