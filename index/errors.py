"""The index's own error: a file that is not the index it claims to be (one line, names the file)."""


class IndexFormatError(ValueError):
    """An index file is missing, unreadable, or of a type this package does not serve."""
