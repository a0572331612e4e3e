"""Encryption of sensitive columns and their blind index. Pure given the keys.

* Values are normalised *before* they reach here (the original lower-cased tokens after
  encrypting them, which made them undecryptable).
* Fernet through ``MultiFernet``: the first key encrypts, every key decrypts, so keys
  rotate without downtime.
* Beside each encrypted column, a keyed HMAC-SHA256 "blind index" of the plaintext: equal
  values have equal hashes in every table, so equality look-ups, joins and GROUP BY work
  without decrypting, and nothing about the value is revealed without the key.
* Each distinct value is encrypted and hashed once per file (a bounded cache): a token per
  distinct value reveals no more than the blind index already does.
"""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from sales_etl.core.errors import ConfigError
from sales_etl.stages.spec import Dataset

CACHE_LIMIT = 500_000  # distinct values remembered per file; cleared past that (memory flat)


def blind_index(key: bytes, value: str) -> bytes:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()


class Protector:
    def __init__(self, fernet_keys: tuple[bytes, ...], blind_key: bytes) -> None:
        if not fernet_keys:
            raise ConfigError("FERNET_KEYS: at least one key is required")
        try:
            self._fernets = [Fernet(k) for k in fernet_keys]
        except (ValueError, TypeError) as exc:
            raise ConfigError("FERNET_KEYS: a key is not a valid Fernet key") from exc
        if len(blind_key) < 32:
            raise ConfigError("BLIND_INDEX_KEY: must hold at least 32 bytes")
        self._multi = MultiFernet(self._fernets)
        self._blind_key = blind_key
        self._cache: dict[str, tuple[str, str]] = {}

    def new_file(self) -> None:
        """Forget the per-file cache (tokens are never reused across files)."""
        self._cache.clear()

    def encrypt(self, value: str) -> str:
        return self._multi.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._multi.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise ValueError("token does not decrypt with any configured key") from exc

    def hash(self, value: str) -> bytes:
        return blind_index(self._blind_key, value)

    def is_current(self, token: str) -> bool:
        """True if the token was made with the newest key (for rotation)."""
        try:
            self._fernets[0].decrypt(token.encode("ascii"))
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        return self._multi.rotate(token.encode("ascii")).decode("ascii")

    def protect(self, columns: dict[str, pa.Array], dataset: Dataset) -> dict[str, pa.Array]:
        """Replace each sensitive column by its tokens and add its blind-index column (hex)."""
        if len(self._cache) > CACHE_LIMIT:
            self._cache.clear()
        out = dict(columns)
        for col in dataset.sensitive:
            name = col.sql[0]
            encoded = pc.dictionary_encode(columns[name])
            values = encoded.dictionary.to_pylist()
            tokens: list[str] = []
            hashes: list[str] = []
            cache = self._cache
            for value in values:
                hit = cache.get(value)
                if hit is None:
                    hit = (self.encrypt(value), self.hash(value).hex())
                    cache[value] = hit
                tokens.append(hit[0])
                hashes.append(hit[1])
            out[name] = pa.array(tokens, pa.string()).take(encoded.indices)
            out[col.hash_column] = pa.array(hashes, pa.string()).take(encoded.indices)
        return out
