"""user names unique within a clinic, not across the server

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 17:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Names the unnamed unique constraint of 0001 on SQLite (recreated in batch mode); PostgreSQL named it.
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("users", naming_convention=_SQLITE_NAMES) as batch:
            batch.drop_constraint("uq_users_username", type_="unique")
            batch.create_unique_constraint("uq_users_clinic_username", ["clinic_id", "username"])
            batch.create_index("ix_users_username", ["username"], unique=False)
    else:
        op.drop_constraint("users_username_key", "users", type_="unique")
        op.create_unique_constraint("uq_users_clinic_username", "users", ["clinic_id", "username"])
        op.create_index("ix_users_username", "users", ["username"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_username")
        batch.drop_constraint("uq_users_clinic_username", type_="unique")
        batch.create_unique_constraint("users_username_key", ["username"])
