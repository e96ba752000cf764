"""Storage: SQLAlchemy tables, sessions, upserts and alembic migrations."""
