"""MLflow: the registry, the served pyfunc model (logged as code) and the UI server."""
