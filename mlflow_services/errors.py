"""Errors the command line reports as a one-line message with exit code 2 (kept import-light)."""


class PromotionError(ValueError):
    """A registry decision that cannot be applied; the message names the version and why."""
