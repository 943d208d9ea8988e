"""Monitoring, alerting and logging for every tenant, planned from its files (pure):
Prometheus scrape jobs and SLO rules (`prometheus`), services' own rules (`rules`),
Alertmanager routing (`alertmanager`), the log shipper (`logs`), the same intent as
prometheus-operator objects (`operator`), the receivers' secrets (`secrets`) and the
whole configuration directory (`config`). `tenantry.monitoring` applies the plans."""
