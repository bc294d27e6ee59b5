"""bounces and inbound reports; suppressions for repeated soft bounces

Every bounce or complaint report is journaled raw (inbound_reports) before it is parsed, and
each bounce it names is kept (bounces). Suppressions gain the reason soft_bounces.

Revision ID: a6e9afc658a9
Revises: e1c7a9d4f2b6
Create Date: 2026-12-04 16:03:24.948642

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a6e9afc658a9'
down_revision = 'e1c7a9d4f2b6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('inbound_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('raw_digest', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=False),
    sa.Column('envelope_to', sa.String(length=254), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('parsed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'parsed', 'ignored', 'failed')", name=op.f('ck_inbound_reports_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_reports')),
    sa.UniqueConstraint('raw_digest', name=op.f('uq_inbound_reports_raw_digest'))
    )
    with op.batch_alter_table('inbound_reports', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_reports_status_id', ['status', 'id'], unique=False)

    op.create_table('bounces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('digest_id', sa.Integer(), nullable=True),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('address', sa.String(length=254), nullable=False),
    sa.Column('diagnostic', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('report_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind IN ('hard', 'soft', 'complaint')", name=op.f('ck_bounces_kind')),
    sa.ForeignKeyConstraint(['report_id'], ['inbound_reports.id'], name=op.f('fk_bounces_report_id_inbound_reports'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bounces')),
    sa.UniqueConstraint('report_id', 'address', name=op.f('uq_bounces_report_id_address'))
    )
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.create_index('ix_bounces_address_kind_received_at', ['address', 'kind', 'received_at'], unique=False)
        batch_op.create_index('ix_bounces_digest_id_kind', ['digest_id', 'kind'], unique=False)
        batch_op.create_index('ix_bounces_received_at_id', ['received_at', 'id'], unique=False)

    _suppression_reasons("'hard_bounce', 'complaint', 'soft_bounces', 'erased', 'manual'")


def _suppression_reasons(values):
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_suppressions_reason'), type_='check')
        batch_op.create_check_constraint('reason', f"reason IN ({values})")


def downgrade():
    op.execute("UPDATE suppressions SET reason = 'hard_bounce' WHERE reason = 'soft_bounces'")
    _suppression_reasons("'hard_bounce', 'complaint', 'erased', 'manual'")
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.drop_index('ix_bounces_received_at_id')
        batch_op.drop_index('ix_bounces_digest_id_kind')
        batch_op.drop_index('ix_bounces_address_kind_received_at')

    op.drop_table('bounces')
    with op.batch_alter_table('inbound_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_reports_status_id')

    op.drop_table('inbound_reports')
