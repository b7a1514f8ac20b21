"""The one exception type a user sees as a message rather than a traceback.

Raise ``UserError`` for anything the user can fix: a missing or corrupt file, a bad flag, a network failure.
The CLI prints ``error: <message>`` and exits with status 2; the message must name the thing at fault.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure caused by the user's input or environment, reported as one line."""
