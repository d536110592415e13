"""The one exception type for mistakes a user can make (bad files, names, shapes).

The CLI prints its message as a single line and exits with code 2; anything else is a
bug and keeps its traceback.
"""


class UserInputError(Exception):
    """A problem with what the user gave us: the message names the input and what is wrong."""
