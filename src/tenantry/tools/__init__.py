"""Pinned non-Python tools: what they are (`catalog`) and how they are built (`install`)."""
