"""Add full_name to user

Revision ID: 1a31ce608336
Revises: 9c0a54914c78
Create Date: 2024-07-31 22:24:34.447891

"""
import sqlalchemy as sa
from alembic import op

revision = "1a31ce608336"
down_revision = "9c0a54914c78"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("user", sa.Column("full_name", sa.String(length=255), nullable=True))


def downgrade():
    op.drop_column("user", "full_name")
