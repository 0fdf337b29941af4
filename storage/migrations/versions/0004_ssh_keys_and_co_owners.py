"""saved SSH keys, co-owners, and the keys each server was created with (a table of its own,
so the server table and the code that reads it at older revisions are untouched)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sshkey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("added_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user", "fingerprint"),
    )
    with op.batch_alter_table("sshkey", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sshkey_user"), ["user"], unique=False)
    op.create_table(
        "coowner",
        sa.Column("lease_id", sa.Integer(), nullable=False),
        sa.Column("user", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("added_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("added_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lease_id"], ["lease.id"]),
        sa.PrimaryKeyConstraint("lease_id", "user"),
    )
    with op.batch_alter_table("coowner", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coowner_user"), ["user"], unique=False)
    op.create_table(
        "serverkeys",
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("fingerprints", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"]),
        sa.PrimaryKeyConstraint("server_id"),
    )


def downgrade() -> None:
    op.drop_table("serverkeys")
    with op.batch_alter_table("coowner", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coowner_user"))
    op.drop_table("coowner")
    with op.batch_alter_table("sshkey", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sshkey_user"))
    op.drop_table("sshkey")
