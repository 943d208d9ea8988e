"""Tenant → objects in every cluster (`objects`, pure), plans (`plan`, pure), and
reconciling clusters to match (`reconcile`)."""
