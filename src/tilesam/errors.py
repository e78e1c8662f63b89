"""The one exception type users see."""


class TileSAMError(Exception):
    """A problem the user can fix: the message says what went wrong and what to do."""


class TileSAMWarning(UserWarning):
    """Something was adjusted for the user (e.g. a box clipped to the image): said once."""


class Cancelled(TileSAMError):
    """Long work (e.g. a propagation) was stopped by its caller's cancel flag; nothing was kept."""
