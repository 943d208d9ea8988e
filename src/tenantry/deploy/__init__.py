"""Deploying: what to do with an event (`decide`, pure), the staging deployer worker
(`deployer`), and production promotion with approval (`promotion`)."""
