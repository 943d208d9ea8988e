"""Unit tests are pure: no cluster, no subprocess, no network."""
