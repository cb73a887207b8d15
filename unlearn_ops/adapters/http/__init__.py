"""HTTP: the intake endpoint for signed deletion requests (a Starlette app, served by uvicorn)."""
