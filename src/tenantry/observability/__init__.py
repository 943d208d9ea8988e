"""Monitoring, alerting and logging for every tenant, planned from its files (pure planners
here; appliers elsewhere). Started with the Prometheus side (`prometheus`)."""
