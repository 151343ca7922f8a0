"""Stdlib-only code that the renderer, process plumbing (supervise/) and the application (api/)
all import: the settings table (settings.py) and the parent-death signal (parent_death.py).
Imports nothing but the standard library, so it never couples the parts it serves.
"""
