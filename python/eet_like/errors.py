"""The error of a user mistake, shared by the library and the applications (eet_like.app).

Library code raises ValueError/TypeError for bad arguments (see STYLE.md). UsageError is for
mistakes the user made outside a call's arguments: a missing extra (transformers, Ray,
Starlette), an unusable tokenizer directory, a bad command-line option. The `eet-like`
command prints it as one line on stderr and exits with status 2, never a traceback.
"""


class UsageError(Exception):
    """A user mistake: the message says what was wrong and how to fix it (one line)."""
