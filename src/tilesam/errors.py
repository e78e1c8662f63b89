"""The one exception type users see."""


class TileSAMError(Exception):
    """A problem the user can fix: the message says what went wrong and what to do."""
