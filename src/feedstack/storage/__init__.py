"""Ports and adapters for storage: event log, dead-letter store, offline (Parquet) store."""
