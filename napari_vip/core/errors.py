"""The one exception type that carries a message meant for the user."""


class VipInputError(ValueError):
    """Bad input from the user: the message says what was wrong and what to do.

    Widgets show it as a notification, the CLI prints it and exits with status 2.
    """
