"""operators, admin_sessions, admin_login_failures, audit_log: the operator's desk

Operator accounts (an Argon2 hash, never the password), their server-side sessions (the
row's id is the SHA-256 of the cookie's token, so a copy of the table signs nobody in;
deleting the row ends the session), the failed sign-ins the login rate limit counts, and
the audit log of every operator action. Nothing here names a reader: the audit log names
readers by row id (newsletter/admin/audit.py).

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_operators_email", "operators", ["email"], unique=True)
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_sessions_operator_id", "admin_sessions", ["operator_id"])
    op.create_table(
        "admin_login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(254), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_login_failures_account", "admin_login_failures", ["account"])
    op.create_index("ix_admin_login_failures_network", "admin_login_failures", ["network"])
    op.create_index("ix_admin_login_failures_at", "admin_login_failures", ["at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("admin_login_failures")
    op.drop_table("admin_sessions")
    op.drop_table("operators")
