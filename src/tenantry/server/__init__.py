"""`tenantry server`: the HTTP API, and the only holder of the platform's credentials.

People reach it with their own bearer token; the management cluster's TokenReview says
who they are (`identity`), the tenant files and platform.yaml say what they may do
(`rights`, pure), and production work is queued for the workers (`tenantry.jobs`)
rather than run by the caller. Every call is written to the audit log.

    app.py        the FastAPI application: wiring, error → status mapping, audit
    context.py    what every request handler gets: the repository, ledger, caller
    reads.py      read endpoints: tenants, services, history, status, operations
    actions.py    promotions, rollbacks, canary control: checked, then queued
    identity.py   bearer token → Person (TokenReview, short cache)
    rights.py     person, right, tenant → allowed or why not (pure)
"""
