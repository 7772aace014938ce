"""Features: defined once (definitions.py), computed by one aggregator for the stream and the
backfill, stored in Feast (online + offline), read on the hot path without per-item lookups."""
