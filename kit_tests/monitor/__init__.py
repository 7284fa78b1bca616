"""The monitor's tests.

A package, so that this directory's conftest is imported as
``monitor.conftest`` and never shadows the suite's own ``conftest``.
"""
