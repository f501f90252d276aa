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
