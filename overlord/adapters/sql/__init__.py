"""The state database (SQLAlchemy 2; SQLite by default, PostgreSQL by URL): engines, tables, the plan store."""
