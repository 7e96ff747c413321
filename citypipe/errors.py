"""The one exception type that stage scripts turn into a one-line error and a non-zero exit."""


class CitypipeError(Exception):
    """Bad input or configuration; the message names the file, key or value and what was expected."""
