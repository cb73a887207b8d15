"""Privacy and fairness audits of model versions (issue 12)."""
