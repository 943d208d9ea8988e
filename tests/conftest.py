"""Shared test configuration: unit tests need nothing; `cluster` tests need the pinned tools."""
