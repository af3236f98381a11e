"""User-facing errors. The CLI prints them as one line (``simgr: error: ...``) and exits with code 2."""


class SimGRError(Exception):
    """Bad input or state a user can fix: the message names the file or value and the problem."""
