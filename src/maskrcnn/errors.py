"""The exception types a user sees as a message rather than a traceback.

Raise ``UserError`` for anything the user can fix: a missing or corrupt file, a bad value, a network failure.
The CLI prints ``error: <message>`` and exits with status 2; the message must name the thing at fault.

Library code speaks of its own arguments, never of command-line flags: a message that names an argument (the value
at fault, or the one to give instead) is an ``ArgumentError``, and the CLI puts the flag in the argument's place.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure caused by the user's input or environment, reported as one line."""


class ArgumentError(UserError):
    """A ``UserError`` whose message names an argument of the function called.

    ``message`` holds ``{arg}`` where the argument's name goes. ``str()`` gives the Python name (``argument``); a
    caller that took the value from elsewhere names it its own way with ``naming`` (the CLI: by its flag).

    >>> e = ArgumentError("max_images", "{arg} must be at least 1, got 0")
    >>> str(e), e.naming("--max-images")
    ('max_images must be at least 1, got 0', '--max-images must be at least 1, got 0')
    """

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(argument, message)  # both in args: the error pickles (worker processes) and compares
        self.argument, self.message = argument, message

    def naming(self, name: str) -> str:
        return self.message.replace("{arg}", name)

    def __str__(self) -> str:
        return self.naming(self.argument)


def check_at_least(argument: str, value: float, least: int, *, unit: str = "") -> None:
    """``ArgumentError`` unless ``value >= least``: "{arg} must be at least 1, got 0" ("0 or more" for 0).

    >>> check_at_least("workers", 0, 1)
    Traceback (most recent call last):
    maskrcnn.errors.ArgumentError: workers must be at least 1, got 0
    """
    if value < least:
        bound = "0 or more" if least == 0 and not unit else f"at least {least}{unit}"
        raise ArgumentError(argument, f"{{arg}} must be {bound}, got {value}")
