"""The behaviour suite's `test_semantics_steps.py` on PostgreSQL (see conftest.py)."""

from integration.test_semantics_steps import *  # noqa: F403
