"""Reference central receiver: verifies, de-duplicates and stores node uploads."""

__version__ = "0.1.0"


def require_extra(what: str) -> None:
    """Raise a one-line error (exit 69) when the 'central' extra is not installed."""
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401  (the operator console's pages)
        import uvicorn  # noqa: F401
    except ImportError as e:
        from node.errors import EX_UNAVAILABLE, StreetnodeError

        err = StreetnodeError(f"{what} needs the central receiver's packages ({e.name} is missing): "
                              "pip install 'streetnode[central]'")
        err.exit_code = EX_UNAVAILABLE
        raise err from None
