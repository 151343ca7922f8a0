"""Process plumbing that runs under supervisord (PID 1, socket holder, web launcher, hooks).

Imports only the standard library and supervisor; never the renderer or the application.
"""
