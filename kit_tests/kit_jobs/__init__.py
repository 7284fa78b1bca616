"""Test-only jobs: the kit's tests run on these, never on the example jobs.

``conftest.py`` points ``JOBS_PACKAGE`` here (through ``FLASK_JOBS_PACKAGE``,
which every app and every process started by a test reads), so the
project's example jobs can change or go without touching the kit's tests.
They mirror the examples' shapes: a small job with a person as payload, a
long one that reports progress, and a periodic one.
"""
