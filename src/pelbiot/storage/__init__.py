"""Storage: engines per dialect, tables, every query, Alembic migrations."""
