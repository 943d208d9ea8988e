"""Integration tests: the adapters and actions against the real parts (fixtures in ../conftest.py)."""
