"""The ledger: SQLAlchemy models, engines, migrations and the queries wflo runs against them."""
