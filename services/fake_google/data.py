"""Deterministic fake Google data: client credentials, metric values, users' accounts and locations."""

from __future__ import annotations

import datetime
import hashlib
import zlib
from dataclasses import dataclass, field

CLIENT_ID = "fake-client-id.apps.googleusercontent.com"
CLIENT_SECRET = "fake-client-secret"
BUSINESS_MANAGE = "https://www.googleapis.com/auth/business.manage"
DEFAULT_USER = "owner@example.com"

METRICS = frozenset(
    {
        "BUSINESS_IMPRESSIONS_DESKTOP_MAPS",
        "BUSINESS_IMPRESSIONS_DESKTOP_SEARCH",
        "BUSINESS_IMPRESSIONS_MOBILE_MAPS",
        "BUSINESS_IMPRESSIONS_MOBILE_SEARCH",
        "BUSINESS_CONVERSATIONS",
        "BUSINESS_DIRECTION_REQUESTS",
        "CALL_CLICKS",
        "WEBSITE_CLICKS",
        "BUSINESS_BOOKINGS",
        "BUSINESS_FOOD_ORDERS",
        "BUSINESS_FOOD_MENU_CLICKS",
    }
)

_BUSINESS_NAMES = (
    "Acme Bakery",
    "Blue Door Cafe",
    "Corner Hardware",
    "Delta Dental",
    "Evergreen Florist",
    "Fulton Fitness",
    "Golden Noodle",
    "Harbor Books",
)


UNPACED_QPM = 1_000_000


def fake_env(url: str, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> dict[str, str]:
    """The environment variables that point the system at a fake served at `url`."""
    return {
        "GOOGLE_AUTH_URL": f"{url}/o/oauth2/v2/auth",
        "GOOGLE_TOKEN_URL": f"{url}/token",
        "GOOGLE_REVOKE_URL": f"{url}/revoke",
        "GBP_ACCOUNT_MANAGEMENT_URL": f"{url}/accountmanagement/v1",
        "GBP_BUSINESS_INFORMATION_URL": f"{url}/businessinformation/v1",
        "GBP_PERFORMANCE_URL": f"{url}/performance/v1",
        "GOOGLE_CLIENT_ID": client_id,
        "GOOGLE_CLIENT_SECRET": client_secret,
        # The fake enforces no quota unless told to: tests and benchmarks pace only where they mean to.
        "GBP_QPM": str(UNPACED_QPM),
    }


def expected_metric_value(location_name: str, metric: str, date: datetime.date) -> int:
    """The value the fake reports for `metric` at `location_name` ("locations/123") on `date`; 0 in ~2% of days."""
    return zlib.crc32(f"{location_name}|{metric}|{date.isoformat()}".encode()) % 50


def _numeric_id(seed: str, digits: int) -> str:
    # hashlib, not hash(): ids must be identical in every process (demo, benchmarks, subprocess fakes).
    value = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    low = 10 ** (digits - 1)
    return str(low + value % (9 * low))


def user_sub(email: str) -> str:
    """The stable numeric OpenID `sub` of a fake Google user."""
    return _numeric_id(f"sub|{email}", 21)


@dataclass(slots=True)
class Location:
    """One Business Profile location of a fake user."""

    id: str
    name: str
    title: str


@dataclass(slots=True)
class Account:
    """One Business Profile account of a fake user, with its locations."""

    id: str
    name: str
    account_name: str
    locations: list[Location] = field(default_factory=list)


@dataclass(slots=True)
class Layout:
    """All accounts and locations of one user, indexed for ownership checks."""

    accounts: list[Account]
    accounts_by_id: dict[str, Account]
    location_ids: frozenset[str]


def build_layout(email: str, accounts: int, locations: int) -> Layout:
    """The deterministic accounts/locations of `email` for the given shape."""
    brand = _BUSINESS_NAMES[zlib.crc32(email.encode()) % len(_BUSINESS_NAMES)]
    local = email.split("@", 1)[0]
    result: list[Account] = []
    number = 0
    for a in range(accounts):
        account_id = _numeric_id(f"account|{email}|{a}", 20)
        account = Account(account_id, f"accounts/{account_id}", f"{local} business {a + 1}")
        for i in range(locations):
            number += 1
            location_id = _numeric_id(f"location|{email}|{a}|{i}", 19)
            account.locations.append(Location(location_id, f"locations/{location_id}", f"{brand} #{number}"))
        result.append(account)
    return Layout(
        accounts=result,
        accounts_by_id={acc.id: acc for acc in result},
        location_ids=frozenset(loc.id for acc in result for loc in acc.locations),
    )
