"""The batch path on an engine: this process or Spark (engine.py owns the session)."""
