"""Reference central receiver: verifies, de-duplicates and stores node uploads."""

__version__ = "0.1.0"
