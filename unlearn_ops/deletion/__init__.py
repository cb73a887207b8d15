"""Deletion requests: the request and its signed envelope, the inbox and the ledger, the one
receive path every intake calls, and the drain's bookkeeping.
"""
