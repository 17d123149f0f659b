"""Persistence: tables, engine factory, migrations and queries."""
