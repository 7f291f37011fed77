"""Where the server's and the clients' access token comes from: a file, else the environment."""

from __future__ import annotations

import os

from ..core.errors import VipInputError

#: Environment variable holding the token when no file is given.
TOKEN_ENV = "NAPARI_VIP_TOKEN"
#: Shortest token a server starts with.
MIN_TOKEN_LENGTH = 16


def read_token(token_file: str | None) -> str | None:
    """The token of ``--token-file F`` (its first line), else ``$NAPARI_VIP_TOKEN``, else ``None``."""
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as exc:
            raise VipInputError(f"Cannot read the token file {token_file}: {exc.strerror}.") from None
        if not token:
            raise VipInputError(f"The token file {token_file} is empty.")
        return token
    return os.environ.get(TOKEN_ENV)


def check_server_token(token: str | None) -> str | None:
    """The token a server starts with, or ``None`` (no token: loopback only).

    Raises :class:`VipInputError` for a token that is empty, has spaces around it, or is shorter than
    :data:`MIN_TOKEN_LENGTH` characters: such a token is guessed or mistyped, never a protection.
    """
    if token is None:
        return None
    if not token.strip():
        raise VipInputError(f"The server's token is empty or only spaces: write a long random token "
                            f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))') to --token-file "
                            f"or {TOKEN_ENV}, or unset {TOKEN_ENV} to serve on loopback without one.")
    if token != token.strip():
        raise VipInputError("The server's token has spaces around it; clients would send it without them. "
                            "Remove the spaces.")
    if len(token) < MIN_TOKEN_LENGTH:
        raise VipInputError(f"The server's token has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
                            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))').")
    return token
