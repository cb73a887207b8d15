"""Fakes of the package's own protocols, shipped for tests: injected, never patched in."""
