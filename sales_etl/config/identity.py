"""Microsoft Entra ID tokens for PostgreSQL (Azure Database for PostgreSQL flexible server),
as an alternative to a password: the managed identity's token is the password.

The credential object caches its token and fetches a new one before the old expires;
asking it at every connection is what keeps long-running workers connected.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


@lru_cache(maxsize=4)
def credential(client_id: str | None) -> Any:
    from azure.identity import DefaultAzureCredential

    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


def database_token(client_id: str | None) -> str:
    """A current access token for PostgreSQL (cached and renewed by the credential)."""
    return str(credential(client_id).get_token(POSTGRES_SCOPE).token)
