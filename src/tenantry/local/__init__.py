"""`tenantry up/down/status`: the whole platform on one machine."""
