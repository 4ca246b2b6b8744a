from __future__ import annotations

import base64

import pytest

from common.cipher import TokenCipher, generate_key_spec, parse_keys
from common.config import load_settings
from common.errors import CipherError, ConfigError

TOKEN = "ya29.a0AfH6SMB-secret-access-token-value"


def cipher(*kids: str) -> tuple[TokenCipher, dict[str, str]]:
    specs = {kid: generate_key_spec(kid) for kid in kids}
    return TokenCipher.from_spec(",".join(specs.values())), specs


def test_roundtrip_and_value_names_its_key_but_not_the_token() -> None:
    c, _ = cipher("k1")
    stored = c.encrypt(TOKEN, integration_id=7, field="access_token")
    assert stored.startswith("v1:k1:")
    assert TOKEN not in stored
    assert c.key_id_of(stored) == "k1"
    assert c.decrypt(stored, integration_id=7, field="access_token") == TOKEN
    # A fresh nonce each time: equal tokens do not give equal ciphertexts.
    assert c.encrypt(TOKEN, integration_id=7, field="access_token") != stored


def test_unicode_and_long_values_roundtrip() -> None:
    c, _ = cipher("k1")
    value = "1//0" + "é" * 3000
    assert (
        c.decrypt(c.encrypt(value, integration_id=1, field="refresh_token"), integration_id=1, field="refresh_token")
        == value
    )


@pytest.mark.parametrize(
    ("integration_id", "field"),
    [(8, "access_token"), (7, "refresh_token"), (8, "refresh_token")],
)
def test_value_moved_to_another_row_or_field_does_not_decrypt(integration_id: int, field: str) -> None:
    c, _ = cipher("k1")
    stored = c.encrypt(TOKEN, integration_id=7, field="access_token")
    with pytest.raises(CipherError) as err:
        c.decrypt(stored, integration_id=integration_id, field=field)
    assert "'k1'" in str(err.value)
    assert str(integration_id) in str(err.value)
    assert TOKEN not in str(err.value) and stored not in str(err.value)


def test_unknown_key_id_is_named() -> None:
    old, _ = cipher("old")
    new, _ = cipher("new")
    stored = old.encrypt(TOKEN, integration_id=1, field="access_token")
    with pytest.raises(CipherError, match=r"'old'.*not in TOKEN_ENCRYPTION_KEYS"):
        new.decrypt(stored, integration_id=1, field="access_token")


def test_same_key_id_with_different_key_material_fails_cleanly() -> None:
    a, _ = cipher("k1")
    b, _ = cipher("k1")
    stored = a.encrypt(TOKEN, integration_id=1, field="access_token")
    with pytest.raises(CipherError, match="does not decrypt with key 'k1'"):
        b.decrypt(stored, integration_id=1, field="access_token")


def test_tampered_values_fail() -> None:
    c, _ = cipher("k1")
    stored = c.encrypt(TOKEN, integration_id=1, field="access_token")
    prefix, body = stored.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 1
    flipped = f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    for bad in (flipped, stored[:-8], f"{prefix}:", f"{prefix}:%%%%", "v2" + stored[2:], "plaintext-token", ""):
        with pytest.raises(CipherError):
            c.decrypt(bad, integration_id=1, field="access_token")


def test_rotation_ready_ring() -> None:
    old, specs = cipher("old")
    ring = TokenCipher.from_spec(f"{generate_key_spec('new')},{specs['old']}")
    stored_old = old.encrypt(TOKEN, integration_id=3, field="refresh_token")
    assert ring.primary_key_id == "new"
    assert ring.needs_rotation(stored_old)
    assert ring.decrypt(stored_old, integration_id=3, field="refresh_token") == TOKEN
    stored_new = ring.encrypt(TOKEN, integration_id=3, field="refresh_token")
    assert ring.key_id_of(stored_new) == "new"
    assert not ring.needs_rotation(stored_new)
    assert not old.needs_rotation(stored_old)


def test_repr_shows_key_ids_only() -> None:
    c, specs = cipher("k1", "k2")
    text = repr(c)
    assert "k1" in text and "k2" in text
    for spec in specs.values():
        assert spec.split(":", 1)[1] not in text


def test_generated_spec_parses_to_a_256_bit_key() -> None:
    spec = generate_key_spec()
    [(kid, raw)] = parse_keys(spec)
    assert spec.startswith(kid + ":") and len(raw) == 32
    assert generate_key_spec() != spec


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "holds no key"),
        (" , ", "holds no key"),
        ("k1", "entry 1 must look like keyid:base64key"),
        (":" + generate_key_spec("x").split(":")[1], "entry 1 must look like keyid:base64key"),
        (f"{generate_key_spec('a')},b@d:AAAA", "entry 2 must look like keyid:base64key"),
        ("k1:c2hvcnQ=", "'k1' must be 32 bytes"),
        ("k1:@@@@", "'k1' is not valid base64"),
        (f"{generate_key_spec('k1')},{generate_key_spec('k1')}", "names key 'k1' twice"),
    ],
)
def test_malformed_key_specs_name_the_problem(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEYS") as err:
        parse_keys(spec)
    assert problem in str(err.value)


def test_malformed_keys_stop_settings_without_echoing_key_material() -> None:
    secret = base64.urlsafe_b64encode(b"x" * 31).decode()
    with pytest.raises(ConfigError) as err:
        load_settings({"BROKER_URL": "amqp://guest:guest@localhost/", "TOKEN_ENCRYPTION_KEYS": f"k1:{secret}"})
    assert "TOKEN_ENCRYPTION_KEYS key 'k1' must be 32 bytes" in str(err.value)
    assert secret not in str(err.value)


def test_stray_characters_in_a_key_are_reported_not_skipped() -> None:
    body = generate_key_spec("k1").split(":", 1)[1]
    for bad in (body[:10] + "!" + body[10:], f'"{body}"', body[:10] + " " + body[10:]):
        with pytest.raises(ConfigError, match="'k1' is not valid base64"):
            parse_keys(f"k1:{bad}")


def test_standard_and_url_safe_base64_keys_are_both_accepted() -> None:
    raw = bytes(range(200, 232))  # encodes with '+', '/' (standard) or '-', '_' (url-safe)
    standard, urlsafe = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    assert standard != urlsafe
    assert parse_keys(f"a:{standard}") == [("a", raw)]
    assert parse_keys(f"a:{urlsafe.rstrip('=')}") == [("a", raw)]
