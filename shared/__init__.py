"""Small stdlib-only helpers that both process plumbing (supervise/) and the application (api/)
import. Imports nothing but the standard library, so it never couples the parts it serves.
"""
