"""The one exception type that reaches users.

A :class:`SegcoreError` carries one sentence naming the file or id at fault and what to do about it.
The command line prints it to stderr and exits non-zero; the dashboard shows it as a message. Anything
else that escapes is a bug in segcore, not in the user's input.
"""


class SegcoreError(Exception):
    """A problem with the user's input, stated as one sentence for a person to act on."""


class DatasetError(SegcoreError):
    """A dataset folder, annotation file or image that cannot be used as it is."""


class CheckpointError(SegcoreError):
    """A file that is neither a segcore checkpoint nor a torchvision state dict, or does not fit the model."""


class TrainingError(SegcoreError):
    """Training cannot go on, e.g. a non-finite loss."""


def os_error_sentence(error: OSError) -> str:
    """An operating system's refusal (a full disk, a folder one may not write, a read-only file system) as
    one sentence naming the file and the cause, with what to do about that cause."""
    import errno

    where = f"{error.filename}: " if error.filename else ""
    remedy = {errno.ENOSPC: "free some space on that disk, or write somewhere else",
              errno.EDQUOT: "free some of your disk quota, or write somewhere else",
              errno.EACCES: "write into a folder you may write to, or change its permissions",
              errno.EPERM: "write into a folder you may write to, or change its permissions",
              errno.EROFS: "the file system is read-only: write somewhere else"}.get(
        error.errno, "check the path, its permissions and free space")
    return f"{where}{error.strerror or error}; {remedy}."


def json_problem(error: Exception) -> str:
    """What kept a file's text from being read as JSON, as the phrase that follows the file's name:
    ``json.loads``' and the file system's errors, which every reader of segcore's JSON files catches alike."""
    import json

    if isinstance(error, json.JSONDecodeError):
        return f"is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
    if isinstance(error, UnicodeDecodeError):
        return "is not UTF-8 text"
    if isinstance(error, RecursionError):
        return "nests its JSON too deeply to read"
    if isinstance(error, ValueError):  # Python reads integers of at most 4300 digits
        return "holds a number too long to read"
    return f"cannot be read ({getattr(error, 'strerror', None) or error})"
