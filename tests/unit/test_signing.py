from __future__ import annotations

import base64
import json

import pytest

from common.cipher import generate_key_spec
from common.signing import BadSignature, SignatureExpired, Signer

OLD = generate_key_spec("old")
NEW = generate_key_spec("new")


def test_roundtrip_keeps_the_payload() -> None:
    signer = Signer(OLD, "reconnect")
    value = signer.sign({"integration_id": 7, "jti": "abc"}, ttl_seconds=600)
    body = signer.verify(value)
    assert body["integration_id"] == 7 and body["jti"] == "abc" and body["kid"] == "old"
    assert "." in value and OLD.split(":")[1] not in value
    assert "old" not in repr(signer) and OLD.split(":")[1] not in repr(signer)


def _reencode(value: str, **changes: object) -> str:
    raw, _, sig = value.partition(".")
    body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    body.update(changes)
    new_raw = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{new_raw}.{sig}"


def test_tampered_values_are_rejected() -> None:
    signer = Signer(OLD, "reconnect")
    value = signer.sign({"integration_id": 7}, ttl_seconds=600)
    raw, _, sig = value.partition(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    for bad in (
        _reencode(value, integration_id=8),
        _reencode(value, exp=10**12),
        f"{raw}.{flipped}",
        raw,
        value + "x",
        "",
        "not.base64!",
        "x" * 5000,
    ):
        with pytest.raises(BadSignature):
            signer.verify(bad)


def test_expired_values_are_rejected_as_expired() -> None:
    signer = Signer(OLD, "reconnect")
    value = signer.sign({"integration_id": 7}, ttl_seconds=-1)
    with pytest.raises(SignatureExpired):
        signer.verify(value)
    assert issubclass(SignatureExpired, BadSignature)


def test_a_value_signed_for_another_purpose_is_rejected() -> None:
    value = Signer(OLD, "oauth-result").sign({"integration_id": 7}, ttl_seconds=600)
    with pytest.raises(BadSignature) as err:
        Signer(OLD, "reconnect").verify(value)
    assert not isinstance(err.value, SignatureExpired)


def test_old_links_still_verify_after_key_rotation_until_the_old_key_goes() -> None:
    value = Signer(OLD, "reconnect").sign({"integration_id": 7}, ttl_seconds=600)
    rotated = Signer(f"{NEW},{OLD}", "reconnect")
    assert rotated.verify(value)["integration_id"] == 7
    fresh = rotated.sign({"integration_id": 8}, ttl_seconds=600)
    assert rotated.verify(fresh)["kid"] == "new"
    with pytest.raises(BadSignature):
        Signer(OLD, "reconnect").verify(fresh)
    with pytest.raises(BadSignature):
        Signer(NEW, "reconnect").verify(value)
