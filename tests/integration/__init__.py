"""Behaviour tests against the public API on real SQLite files (a package, so that its
conftest has its own module name)."""
