"""delivery indexes for claiming and enqueueing at scale

Claims walk partial indexes (each sending digest's due rows, other due mail, leases), so sent
rows and paused digests cost them nothing. Enqueueing a digest writes four indexes instead of
six: the digest's unique key now leads with the subscriber and replaces the subscriber index,
and the alerts' unique key covers alert rows only. The foreign keys from deliveries to digests
and subscribers go: their per-row checks were half the cost of enqueueing (the code removes a
subscriber's rows itself, as SQLite always needed, and digests are never deleted).

The dashboard's counts: on PostgreSQL, delivery_counts is kept by statement triggers on
deliveries (one upsert per statement, whatever its size, its rows locked in one order), so
reading them costs a few rows however large and busy the digest. SQLite counts the deliveries
(its index gains the kind, so the count reads the index alone).

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


COUNT_CHANGES = """
CREATE FUNCTION mailer_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Each branch names only the transition tables its operation has.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_counts AS c (digest_id, status, count)
        SELECT digest_id, status, count(*) FROM new_rows
        WHERE digest_id IS NOT NULL AND kind <> 'test'
        GROUP BY digest_id, status ORDER BY digest_id, status
        ON CONFLICT (digest_id, status) DO UPDATE SET count = c.count + excluded.count;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO delivery_counts AS c (digest_id, status, count)
        SELECT digest_id, status, sum(delta) FROM (
            SELECT digest_id, status, -1 AS delta FROM old_rows
            WHERE digest_id IS NOT NULL AND kind <> 'test'
            UNION ALL
            SELECT digest_id, status, 1 FROM new_rows
            WHERE digest_id IS NOT NULL AND kind <> 'test'
        ) AS changes
        GROUP BY digest_id, status HAVING sum(delta) <> 0 ORDER BY digest_id, status
        ON CONFLICT (digest_id, status) DO UPDATE SET count = c.count + excluded.count;
    ELSE
        INSERT INTO delivery_counts AS c (digest_id, status, count)
        SELECT digest_id, status, -count(*) FROM old_rows
        WHERE digest_id IS NOT NULL AND kind <> 'test'
        GROUP BY digest_id, status ORDER BY digest_id, status
        ON CONFLICT (digest_id, status) DO UPDATE SET count = c.count + excluded.count;
    END IF;
    RETURN NULL;
END
$$
"""
TRIGGERS = {
    'deliveries_counted_insert': 'INSERT ON deliveries REFERENCING NEW TABLE AS new_rows',
    'deliveries_counted_update': (
        'UPDATE ON deliveries REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
    ),
    'deliveries_counted_delete': 'DELETE ON deliveries REFERENCING OLD TABLE AS old_rows',
}


def upgrade():
    op.create_table('delivery_counts',
    sa.Column('digest_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('digest_id', 'status', name=op.f('pk_delivery_counts'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(COUNT_CHANGES)
        for name, event in TRIGGERS.items():
            op.execute(
                f'CREATE TRIGGER {name} AFTER {event}'
                ' FOR EACH STATEMENT EXECUTE FUNCTION mailer_count_deliveries()'
            )
        # The rows already there; the triggers' lock on deliveries keeps writers out meanwhile.
        op.execute(
            "INSERT INTO delivery_counts (digest_id, status, count)"
            " SELECT digest_id, status, count(*) FROM deliveries"
            " WHERE digest_id IS NOT NULL AND kind <> 'test' GROUP BY digest_id, status"
        )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_status_next_attempt_at')
        batch_op.drop_index('ix_deliveries_subscriber_id')
        batch_op.drop_index('ix_deliveries_digest_id_status')
        batch_op.drop_constraint('uq_deliveries_digest_id_subscriber_id', type_='unique')
        batch_op.drop_constraint('uq_deliveries_film_id_subscriber_id', type_='unique')
        batch_op.drop_constraint('fk_deliveries_digest_id_digests', type_='foreignkey')
        batch_op.drop_constraint('fk_deliveries_subscriber_id_subscribers', type_='foreignkey')
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
    if op.get_bind().dialect.name == 'postgresql':
        for name in TRIGGERS:
            op.execute(f'DROP TRIGGER {name} ON deliveries')
        op.execute('DROP FUNCTION mailer_count_deliveries()')
    op.drop_table('delivery_counts')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_leased')
        batch_op.drop_index('ix_deliveries_due_mail')
        batch_op.drop_index('ix_deliveries_due_digest')
        batch_op.drop_index('uq_deliveries_film_id_subscriber_id')
        batch_op.drop_index('ix_deliveries_digest_id_status_kind')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_deliveries_subscriber_id_digest_id'), type_='unique')
        batch_op.create_foreign_key(
            op.f('fk_deliveries_subscriber_id_subscribers'), 'subscribers', ['subscriber_id'],
            ['id'], ondelete='CASCADE'
        )
        batch_op.create_foreign_key(
            op.f('fk_deliveries_digest_id_digests'), 'digests', ['digest_id'], ['id'],
            ondelete='CASCADE'
        )
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
