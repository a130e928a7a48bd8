"""The one exception type for user errors: the CLI turns it into a one-line message and exit status 1."""


class Sc2edgeError(Exception):
    """Bad input from the user (a file, a stream, a bundle, an option), explained in its message."""


class CheckpointError(Sc2edgeError):
    """A checkpoint that cannot be loaded safely or completely."""


class BundleError(Sc2edgeError):
    """A bundle directory that is missing, incomplete, tampered with or of another format version."""


class StreamError(Sc2edgeError):
    """A compressed stream that is corrupt, truncated, oversized or made for other entropy tables."""
