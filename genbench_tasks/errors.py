"""Errors that the CLI turns into one-line messages (never tracebacks)."""


class GenbenchError(Exception):
    """A user-facing error: bad input, bad data, bad configuration. Message is one readable line."""


class DataValidationError(GenbenchError):
    """A dataset failed validation; carries the structured report."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report or {}
