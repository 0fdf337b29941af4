"""the lab's process: who applies, the repository check, the write-up reminder

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-29 06:40:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0004'
down_revision = '0001'
branch_labels = None
depends_on = None

_TEXT = sqlmodel.sql.sqltypes.AutoString()
_TIME = sqlmodel.sql.sqltypes.UTCDateTime()


def upgrade() -> None:
    # Leases filed before this release were never classified: they rank and are budgeted as
    # "other" (the class that may use the whole month), and their repository check is done
    # (a sentence, no verdict) rather than pending, so nothing asks the forge about the lab's
    # whole history.
    with op.batch_alter_table('lease', schema=None) as batch_op:
        batch_op.add_column(sa.Column('applicant_class', _TEXT, nullable=False, server_default='other'))
        batch_op.add_column(sa.Column('claimed_class', _TEXT, nullable=False, server_default='other'))
        batch_op.add_column(sa.Column('member_org', _TEXT, nullable=False, server_default=''))
        batch_op.add_column(sa.Column('class_note', _TEXT, nullable=False, server_default=''))
        batch_op.add_column(sa.Column('repo_check', _TEXT, nullable=False, server_default=''))
        batch_op.add_column(sa.Column('repo_ok', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('repo_check_at', _TIME, nullable=True))
        batch_op.add_column(sa.Column('writeup_remind_at', _TIME, nullable=True))
        batch_op.create_index(batch_op.f('ix_lease_applicant_class'), ['applicant_class'], unique=False)
        batch_op.create_index(batch_op.f('ix_lease_repo_check_at'), ['repo_check_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_lease_writeup_remind_at'), ['writeup_remind_at'], unique=False)
    op.execute("UPDATE lease SET repo_check = 'not checked (filed before labbot checked repositories)'")


def downgrade() -> None:
    with op.batch_alter_table('lease', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lease_writeup_remind_at'))
        batch_op.drop_index(batch_op.f('ix_lease_repo_check_at'))
        batch_op.drop_index(batch_op.f('ix_lease_applicant_class'))
        for name in ('writeup_remind_at', 'repo_check_at', 'repo_ok', 'repo_check',
                     'class_note', 'member_org', 'claimed_class', 'applicant_class'):
            batch_op.drop_column(name)
