"""Helpers shared by the process-lifecycle tests: real processes, bounded waits, load, cleanup."""
