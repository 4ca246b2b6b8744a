"""A real-HTTP fake of Google OAuth2 and the Business Profile APIs, for tests, the demo and benchmarks."""

from __future__ import annotations

from services.fake_google.data import expected_metric_value
from services.fake_google.server import FakeGoogleServer, start_fake_google
from services.fake_google.state import FakeGoogle

__all__ = ["FakeGoogle", "FakeGoogleServer", "expected_metric_value", "start_fake_google"]
