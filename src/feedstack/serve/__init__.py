"""Online serving: the feed request path (``pipeline.py``: candidate cache, online features,
ranker, filters, fallbacks), its transports (HTTP on FastAPI/uvicorn, gRPC), API keys and scopes,
the errors-to-status table, event intake off the feed threads, impression logging, the models a
process holds (champion and canary), and the supervisor of several serving processes."""
