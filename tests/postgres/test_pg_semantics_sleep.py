"""The behaviour suite's `test_semantics_sleep.py` on PostgreSQL (see conftest.py)."""

from integration.test_semantics_sleep import *  # noqa: F403

# These two open their own SQLite files (one per hibernate_after), so they test nothing here.
del test_s20_results_identical_with_and_without_hibernation  # noqa: F821
del test_s20_parallel_waits_identical_with_and_without_hibernation  # noqa: F821
