"""Prefect flows that wire unlearn_ops library calls together; no logic of their own."""
