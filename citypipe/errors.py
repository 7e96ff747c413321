"""The one exception type that stage scripts turn into a one-line error and a non-zero exit."""


class CitypipeError(Exception):
    """Bad input or configuration; the message names the file, key or value and what was expected."""


def first_line(error: BaseException) -> str:
    """An exception's message in one line, or its type's name where the message is empty (EOFError())."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def is_out_of_memory(error: BaseException) -> bool:
    """torch.OutOfMemoryError (CUDA), MemoryError (numpy), or a RuntimeError from another allocator
    (CPU: "can't allocate memory", MPS: "out of memory"); by name, so that no stage imports torch for it."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
