"""Stands in for prometheus_client where a test needs it absent (on PYTHONPATH first)."""

raise ImportError("prometheus_client is hidden for this test")
