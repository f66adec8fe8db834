"""signup_limit_windows: sign-up limits counted in the database; the admin sign-in keeps
no typed text

Sign-up limits are counted in the database without Redis and while Redis fails, so they
hold across web processes through an outage. The admin sign-in's failure counter and audit
rows kept whatever was typed as the address (a password, once); the counter now holds a
keyed hash, so its old rows go (they matter for 15 minutes), and failed sign-ins already in
the audit log that name no account are rewritten to say "unknown".

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signup_limit_windows",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_signup_limit_windows_ends_at", "signup_limit_windows", ["ends_at"])
    op.execute("DELETE FROM admin_login_failures")
    op.execute("UPDATE audit_log SET actor = 'unknown', target = 'operator:unknown' "
               "WHERE action = 'login-failed' AND actor NOT IN (SELECT email FROM operators)")


def downgrade() -> None:
    op.drop_index("ix_signup_limit_windows_ends_at", table_name="signup_limit_windows")
    op.drop_table("signup_limit_windows")
