"""Subcommands of `streetnode`. Each module offers ``register(subparsers)``.

Modules here import only the standard library and `node` at import time;
heavy imports (drivers, requests) happen inside the command's function, so
`streetnode --help` and the daemon's cold start stay fast.
"""
