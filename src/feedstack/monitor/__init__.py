"""Monitoring: the serving metrics (one class, every name defined once), drift statistics and the
windowed detector, SLOs and burn-rate alerts, Prometheus rules and their promtool tests, the
Grafana dashboard, business KPIs from the log, and the retrain policy. The decisions are pure
(``slo.py``, ``retrain.py``); scraping and file writing sit at the edges."""
