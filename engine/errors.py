"""The two kinds of error: a caller's misuse of the engine, and our own integrity bug.

A participant's mistake is never an exception: it is a REJECTED event with a reason code.
"""


class EngineConfigError(ValueError):
    """The engine was configured or called wrongly (bad prior close, unknown instrument...)."""


class BookIntegrityError(AssertionError):
    """An invariant of the book does not hold: a bug in the engine, never the user's fault.

    ``seq`` is the number of commands the book had processed when the check failed.
    """

    def __init__(self, message: str, seq: int = -1):
        super().__init__(f"{message} (after command {seq})" if seq >= 0 else message)
        self.seq = seq


class PriceLimitError(EngineConfigError):
    """A trading day would open with a prior close above ``rules.MAX_PRIOR_CLOSE``.

    Raised before the command that would open that day changes anything. ``processed`` is the
    number of commands of the batch already processed and ``events`` their events, so nothing
    done is lost; the book can be queried, and takes no more commands past that day.
    """

    def __init__(self, message: str, processed: int = 0, events=None):
        super().__init__(message)
        self.processed = processed
        self.events = events
