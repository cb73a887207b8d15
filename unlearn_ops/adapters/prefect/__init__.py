"""Prefect (its API client): deletion events, queued runs, the approval pause; errors translated."""
