"""Thin adapters between the core and MLflow, DVC, great-expectations and S3."""
