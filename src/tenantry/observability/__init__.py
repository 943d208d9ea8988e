"""Monitoring, alerting and logging for every tenant, planned from its files (pure planners
here; appliers elsewhere): Prometheus scrape jobs and SLO rules (`prometheus`) and
Alertmanager routing (`alertmanager`). Logs and the appliers are still to come."""
