"""The one exception base: every error a user can act on extends `CommuterError`.

The command line prints such an error as one line without a traceback; anything else is a bug and
is printed with its class name.
"""

from __future__ import annotations


class CommuterError(Exception):
    """A problem the user can fix (bad input, missing model, wrong option); the message says how."""


class UserError(CommuterError, ValueError):
    """A wrong option or argument on the command line or in a request."""
