"""Signed, expiring values for links (reconnect emails, post-callback pages), keyed off the token key ring."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.cipher import parse_keys
from common.errors import IntegrationsError


class BadSignature(IntegrationsError):
    """The value was tampered with, signed for another purpose, or signed by a key we no longer hold."""


class SignatureExpired(BadSignature):
    """The value was genuine but its time is up."""


class Signer:
    """HMAC-SHA256 over a JSON payload; the first key signs, every key of the ring verifies.

    Signing keys are derived (HKDF) from TOKEN_ENCRYPTION_KEYS so no extra secret is needed, and a
    rotation keeps old links valid for as long as the old key stays in the ring.
    """

    def __init__(self, key_spec: str, purpose: str) -> None:
        self._purpose = purpose
        self._keys = [(kid, _derive(raw, purpose)) for kid, raw in parse_keys(key_spec)]

    def __repr__(self) -> str:
        return f"Signer(purpose={self._purpose!r})"

    def sign(self, payload: dict[str, Any], ttl_seconds: int) -> str:
        kid, key = self._keys[0]
        body = {**payload, "exp": int(time.time()) + ttl_seconds, "kid": kid}
        raw = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{raw}.{_b64(hmac.new(key, raw.encode(), hashlib.sha256).digest())}"

    def verify(self, value: str) -> dict[str, Any]:
        raw, sep, sig = value.partition(".")
        if not sep or len(value) > 4096:
            raise BadSignature("malformed signed value")
        try:
            given = _unb64(sig)
            signed = raw.encode("ascii")
        except ValueError:
            raise BadSignature("malformed signed value") from None
        # The signature is checked before the payload is parsed: nothing a stranger wrote ever reaches the
        # JSON parser (a deeply nested payload would otherwise blow its recursion limit).
        macs = [hmac.new(key, signed, hashlib.sha256).digest() for _, key in self._keys]
        if not any(hmac.compare_digest(mac, given) for mac in macs):
            raise BadSignature("signature does not match")
        body = json.loads(_unb64(raw))
        if not isinstance(body, dict):
            raise BadSignature("malformed signed value")
        if int(body.get("exp", 0)) < time.time():
            raise SignatureExpired("link has expired")
        return body


def _derive(raw: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"integrations/{purpose}".encode()).derive(raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
