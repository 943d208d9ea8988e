"""`tenantry verify`: every changed service linted, then installed as its tenant into a
real cluster and checked (`run`); which services changed (`changes`); JUnit (`junit`)."""
