"""Subcommands of `streetnode-central`; each module has ``register(subparsers)``."""
