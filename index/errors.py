"""The index's own errors (one line each, naming the file or the number that failed)."""


class IndexFormatError(ValueError):
    """An index file is missing, unreadable, or of a type this package does not serve."""


class RecallTargetError(ValueError):
    """No search setting of an approximate index reached the requested recall@10."""
