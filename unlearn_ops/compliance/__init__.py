"""Compliance: the audit of a request, the report over a period, purge of superseded
artifacts and the scan for forgotten records.
"""
