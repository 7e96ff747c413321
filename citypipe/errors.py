"""The one exception type that stage scripts turn into a one-line error and a non-zero exit."""


class CitypipeError(Exception):
    """Bad input or configuration; the message names the file, key or value and what was expected."""


def first_line(error: BaseException) -> str:
    """An exception's message in one line, or its type's name where the message is empty (EOFError())."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
