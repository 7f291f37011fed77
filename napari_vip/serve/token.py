"""Where the server's and the clients' access token comes from: a file, else the environment."""

from __future__ import annotations

import os

from ..core.errors import VipInputError

#: Environment variable holding the token when no file is given.
TOKEN_ENV = "NAPARI_VIP_TOKEN"


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
    return os.environ.get(TOKEN_ENV) or None
