"""The behaviour suite's `test_semantics_instances.py` on PostgreSQL (see conftest.py)."""

from integration.test_semantics_instances import *  # noqa: F403
