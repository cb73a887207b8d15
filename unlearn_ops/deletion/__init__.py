"""Deletion requests: the request and its signed envelope, the inbox and the ledger, the one
receive path every intake calls, the coalescing policy, and the drain (its bookkeeping, its
approval form and its failure policy).
"""
