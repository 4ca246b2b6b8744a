"""Token encryption at rest: AES-256-GCM with versioned keys, bound to integration and field."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.errors import CipherError, ConfigError

PREFIX = "v1"
_NONCE_BYTES = 12


def valid_key_id(kid: str) -> bool:
    """A key id TOKEN_ENCRYPTION_KEYS can hold: letters, digits, '-' and '_'."""
    return bool(kid) and kid.replace("-", "").replace("_", "").isalnum()


def generate_key_spec(key_id: str | None = None) -> str:
    """A new `keyid:base64key` entry for TOKEN_ENCRYPTION_KEYS."""
    kid = key_id or "k" + secrets.token_hex(4)
    return f"{kid}:{base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse `keyid:base64key,...`; the first key encrypts, every key decrypts."""
    keys: list[tuple[str, bytes]] = []
    for n, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        kid, sep, b64 = part.partition(":")
        if not sep or ":" in b64 or not valid_key_id(kid):
            raise ConfigError(f"TOKEN_ENCRYPTION_KEYS entry {n + 1} must look like keyid:base64key")
        try:
            # validate=True: a stray character (a typo, a quote) is reported instead of silently skipped.
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"TOKEN_ENCRYPTION_KEYS key {kid!r} is not valid base64") from None
        if len(raw) != 32:
            raise ConfigError(f"TOKEN_ENCRYPTION_KEYS key {kid!r} must be 32 bytes (AES-256), got {len(raw)}")
        if any(kid == k for k, _ in keys):
            raise ConfigError(f"TOKEN_ENCRYPTION_KEYS names key {kid!r} twice")
        keys.append((kid, raw))
    if not keys:
        raise ConfigError("TOKEN_ENCRYPTION_KEYS holds no key")
    return keys


@dataclass(frozen=True)
class _Key:
    kid: str
    aead: AESGCM


class TokenCipher:
    """Encrypts tokens as `v1:<keyid>:<base64(nonce|ciphertext)>`.

    The associated data names the integration and the field, so a ciphertext copied to another row or
    column fails to decrypt instead of handing out someone else's token.
    """

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError("TOKEN_ENCRYPTION_KEYS holds no key")
        self._keys = {kid: _Key(kid, AESGCM(raw)) for kid, raw in keys}
        self._primary = keys[0][0]

    @classmethod
    def from_spec(cls, spec: str) -> TokenCipher:
        return cls(parse_keys(spec))

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id of the ring, the primary first."""
        return (self._primary, *(k for k in self._keys if k != self._primary))

    def __repr__(self) -> str:
        return f"TokenCipher(primary={self._primary!r}, keys={sorted(self._keys)!r})"

    def encrypt(self, plaintext: str, *, integration_id: int, field: str) -> str:
        key = self._keys[self._primary]
        nonce = os.urandom(_NONCE_BYTES)
        ct = key.aead.encrypt(nonce, plaintext.encode(), _aad(integration_id, field))
        return f"{PREFIX}:{key.kid}:{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def decrypt(self, stored: str, *, integration_id: int, field: str) -> str:
        prefix, kid, body = _split(stored)
        if prefix != PREFIX:
            raise CipherError(f"{field} of integration {integration_id}: unknown format {prefix!r}")
        key = self._keys.get(kid)
        if key is None:
            raise CipherError(
                f"{field} of integration {integration_id} is encrypted with key {kid!r}, "
                "which is not in TOKEN_ENCRYPTION_KEYS"
            )
        try:
            blob = base64.urlsafe_b64decode(body)
            plain = key.aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(integration_id, field))
        except (InvalidTag, binascii.Error, ValueError):
            raise CipherError(
                f"{field} of integration {integration_id} does not decrypt with key {kid!r} "
                "(wrong key, or the value was altered or copied from another row)"
            ) from None
        return plain.decode()

    def key_id_of(self, stored: str) -> str:
        return _split(stored)[1]

    def needs_rotation(self, stored: str) -> bool:
        return self.key_id_of(stored) != self._primary


def _split(stored: str) -> tuple[str, str, str]:
    parts = stored.split(":", 2)
    if len(parts) != 3:
        raise CipherError("stored token is not in the v1:<keyid>:<data> format")
    return parts[0], parts[1], parts[2]


def _aad(integration_id: int, field: str) -> bytes:
    return f"integrations/{integration_id}/{field}".encode()
