"""Production work as ledger rows: the server queues an operation (an approval's deploy, a
rollback), a worker claims it and carries it out, and anyone allowed follows it by id.

So a production rollout never depends on someone's terminal staying open: closing the
CLI that asked changes nothing.
"""
