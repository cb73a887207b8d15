"""HTTP: the intake endpoint for signed deletion requests."""
