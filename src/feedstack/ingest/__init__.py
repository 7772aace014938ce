"""Ingestion: read raw records, validate them into events, dead-letter the rest, append durably."""
