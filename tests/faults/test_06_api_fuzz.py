"""6. The API under fuzzing: schemathesis from /openapi.json with valid keys, then hand-made hostile requests.

No request may get a 5xx (the database, the broker and the fake are all up), every response must match the
OpenAPI document, and malformed input of any kind (oversized or non-JSON bodies, odd unicode, path tricks in
ids) is a 4xx with the JSON error body.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from common.signing import BadSignature, Signer
from tests.conftest import TEST_KEYS
from tests.faults.evidence import figure
from tests.faults.lab import ADMIN_KEY, Lab
from tests.faults.scale import Scale
from tests.faults.seed import Seeded, seed
from tests.support.api import bearer

# Schema-valid but rightly refused: success needs a value only a real flow produces (OAuth state, signed link),
# or a rule across parameters that OpenAPI cannot state (insights: start <= end, at most 550 days).
NO_POSITIVE_CHECK = {
    "/oauth/google/callback",
    "/oauth/google/done",
    "/integrations/{id}/reconnect",
    "/integrations/{id}/insights",
}


@dataclass
class Target:
    url: str
    mine: list[Seeded]
    theirs: list[Seeded]
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def target(shared_lab: Lab, google_server) -> Iterator[Target]:
    """The API as its own process on the module's lab, two users with four integrations each."""
    c = shared_lab.container(pool_size=4)
    fleet = seed(c, google_server.fake, 8, per_user=4)
    shared_lab.secrets |= {s.api_key for s in fleet}
    api = shared_lab.api()
    yield Target(api.url, fleet[:4], fleet[4:])


def headers_for(path: str, n: int, t: Target) -> dict[str, str]:
    if path.startswith("/admin"):
        return bearer(ADMIN_KEY)
    return bearer(t.mine[0].api_key)


def fuzz_operation(lab: Lab, t: Target, operation, mode: GenerationMode, examples: int) -> None:
    counter = itertools.count()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        n = next(counter)
        if "id" in (case.path_parameters or {}) and mode.is_positive and n % 3:
            # Most generated ids exist nowhere: aim two in three at real integrations, the caller's and another user's.
            case.path_parameters["id"] = (t.mine if n % 3 == 1 else t.theirs)[n % 4].id
        resp = case.call(headers=headers_for(operation.path, n, t), timeout=30)
        t.calls += 1
        lab.responses.append(resp.text)
        excluded = [positive_data_acceptance] if operation.path in NO_POSITIVE_CHECK else []
        try:
            case.validate_response(resp, excluded_checks=excluded)
        except (Failure, FailureGroup) as exc:  # collect every kind of failure, not just the first
            group = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
            first = "; ".join(sorted({f.title for f in group}))
            t.failures.append(f"{operation.method.upper()} {operation.path} [{mode}] {resp.status_code}: {first}")
            t.examples.setdefault(f"{operation.method.upper()} {operation.path} {first}", case.as_curl_command())

    try:
        run()
    except Unsatisfiable:
        assert not mode.is_positive, f"no valid request for {operation.path}"  # nothing to negate: no parameters


@pytest.mark.timeout(900)
def test_schemathesis_finds_no_5xx_and_every_answer_matches_the_document(scale: Scale, module_lab: Lab, target: Target):
    lab = module_lab
    schema = schemathesis.openapi.from_url(f"{target.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(lab, target, operation, mode, scale.fuzz_examples)
    assert not target.failures, "\n".join(sorted(set(target.failures))) + "\n" + "\n".join(target.examples.values())
    figure(f"6. fuzzing [{scale.name}]", operations=len(operations), schemathesis_cases=target.calls)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


DEEP = "[" * 50_000
DEEP_SIGNED = _b64(b"[" * 1_500) + ".c2ln"  # a "signed value" whose payload nests deeper than the parser goes
LONG_ID = "1" * 5_000


def hostile_requests(mine: int, theirs: int) -> list[tuple[str, str, dict]]:
    """(method, raw path and query, httpx options) that must each get a 4xx."""
    connect = "/integrations/google/connect"
    body = {"headers": {"Content-Type": "application/json"}}
    form = {"headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    out: list[tuple[str, str, dict]] = [
        ("POST", connect, {"content": b"a" * 70_000}),
        ("POST", connect, {"content": iter([b"{" + b" " * 40_000, b" " * 40_000 + b"}"])}),
        ("POST", connect, {"content": b"not json", **body}),
        ("POST", connect, {"content": b"\x00\xff\xfe\xfd", **body}),
        ("POST", connect, {"content": b"[]", **body}),
        ("POST", connect, {"content": b'{"login_hint": 5}', **body}),
        ("POST", connect, {"content": b'{"login_hint": "a@b.c", "redirect_uri": "https://evil.example"}', **body}),
        ("POST", connect, {"content": DEEP.encode(), **body}),
        ("POST", connect, {"content": b'{"login_hint": "\\ud800@example.com"}', **body}),
        ("POST", connect, {"content": b'{"login_hint": "' + "\u202e\u200b".encode() * 10 + b'"}', **body}),
        ("POST", connect, {"content": b'{"login_hint": NaN}', **body}),
        ("GET", "/oauth/google/done?r=" + DEEP_SIGNED, {}),
        ("GET", "/oauth/google/done?r=" + "x" * 10_000, {}),
        ("GET", "/oauth/google/done?r=%00%ff", {}),
        ("GET", f"/integrations/{mine}/reconnect?token=" + DEEP_SIGNED, {}),
        ("GET", f"/integrations/{mine}/reconnect?token=%F0%9F%92%A9.%00", {}),
        ("GET", f"/integrations/{LONG_ID}/reconnect?token=abc.def", {}),
        ("GET", "/integrations/-1/reconnect?token=abc.def", {}),
        ("GET", "/integrations/%E1%9F%A1/reconnect?token=abc.def", {}),  # a Khmer digit one
        ("HEAD", f"/integrations/{mine}/reconnect?token=" + DEEP_SIGNED, {}),
        ("HEAD", f"/integrations/{LONG_ID}/reconnect?token=abc.def", {}),
        ("POST", f"/integrations/{mine}/reconnect?token=abc.def", {}),  # the link's token is no submitted form
        ("POST", f"/integrations/{mine}/reconnect", {"data": {"token": DEEP_SIGNED}}),
        ("POST", f"/integrations/{mine}/reconnect", {"data": {"token": ["a.b", "c.d"]}}),
        ("POST", f"/integrations/{mine}/reconnect", {"data": {f"f{i}": "x" for i in range(50)}}),
        ("POST", f"/integrations/{mine}/reconnect", {"content": b"token=%ff%fe", **form}),
        ("POST", f"/integrations/{mine}/reconnect", {"content": b"token=" + b"a" * 60_000, **form}),
        ("POST", f"/integrations/{mine}/reconnect", {"content": b'{"token": "a.b"}', **body}),
        ("GET", "/oauth/google/callback?state=" + "s" * 5_000 + "&code=c", {}),
        ("GET", "/oauth/google/callback?state=%00&code=%ff", {}),
        ("GET", "/oauth/google/callback?state=abc&error=" + "%E2%80%AE" * 100, {}),
        ("GET", f"/integrations/{mine}/insights?start=%00", {}),
        ("GET", f"/integrations/{mine}/insights?start=&end=", {}),
        ("GET", f"/integrations/{mine}/insights?start=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%94-01-01", {}),
        ("GET", f"/integrations/{mine}/insights?start=9999-99-99", {}),
        ("GET", f"/integrations/{mine}/insights?end=0001-01-01&start=0001-01-01x", {}),
        ("GET", f"/integrations/{mine}/insights?start=" + "2" * 10_000, {}),
    ]
    for suffix in ("", "/sync", "/refresh", "/insights"):
        method = "POST" if suffix in ("/sync", "/refresh") else "GET"
        for bad in (
            f"..%2F{mine}",
            f"{mine}%00",
            f"{mine}%2F..%2F{theirs}",
            "%2e%2e",
            LONG_ID,
            "%D9%A1",  # an Arabic-Indic digit one
            f"{mine}%20",
            f"+{mine}",
            f"0x{mine:x}",
            f"{theirs}",  # another user's integration: exactly like a missing one
        ):
            out.append((method, f"/integrations/{bad}{suffix}", {}))
    out.append(("DELETE", f"/integrations/{theirs}", {}))
    return out


def test_hostile_requests_get_a_4xx_never_a_5xx(scale: Scale, module_lab: Lab, target: Target):
    lab = module_lab
    answers: list[tuple[str, str, int | str]] = []
    headers = bearer(target.mine[0].api_key)
    # A connection per request: a 500 closes its connection, which must not blame the next request.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=target.url, timeout=30, limits=no_reuse) as http:
        for method, path, options in hostile_requests(target.mine[0].id, target.theirs[0].id):
            raw = path.encode("ascii")
            url = httpx.URL(target.url).copy_with(raw_path=raw)
            opts = {**options, "headers": {**headers, **options.get("headers", {})}}
            try:
                resp = lab.record(http.request(method, url, **opts))
            except httpx.HTTPError as exc:
                answers.append((method, path[:80], type(exc).__name__))
                continue
            answers.append((method, path[:80], resp.status_code))
            if 400 <= resp.status_code < 500 and resp.headers.get("content-type", "").startswith("application/json"):
                assert set(resp.json()["error"]) == {"code", "message"}, (method, path[:80])
        for value in ("Bearer " + "ü" * 100, "Bearer ik_" + "A" * 5_000, "Bearer\tik_x", "bearer  ik_x"):
            resp = lab.record(http.get("/integrations", headers={"Authorization": value.encode("latin-1")}))
            answers.append(("GET", f"/integrations Authorization={value[:20]!r}", resp.status_code))
    wrong = [a for a in answers if not (isinstance(a[2], int) and 400 <= a[2] < 500)]
    assert not wrong, "\n".join(f"{m} {p} -> {s}" for m, p, s in wrong)
    figure(f"6. fuzzing [{scale.name}]", hostile_requests=len(answers))


def test_a_signed_value_is_checked_before_anything_in_it_is_parsed(scale: Scale, monkeypatch: pytest.MonkeyPatch):
    """The done page's `r` and the reconnect link's `token` come from strangers: forged ones are refused on their
    signature alone, whatever they hold (a payload nested deeper than the JSON parser goes was a 500)."""
    signer = Signer(TEST_KEYS, "done-page")
    parsed: list[object] = []
    real_loads = json.loads
    monkeypatch.setattr(json, "loads", lambda raw, *a, **kw: parsed.append(raw) or real_loads(raw, *a, **kw))
    for forged in (DEEP_SIGNED, _b64(b'{"i": 1, "exp": 9999999999}') + ".c2ln", "e30." + "A" * 43, "\u00e9.\u00e9"):
        with pytest.raises(BadSignature):
            signer.verify(forged)
    assert parsed == [], "nothing unsigned reached the parser"
    genuine = signer.sign({"i": 7}, 60)
    assert signer.verify(genuine)["i"] == 7


HUGE_METHOD = "eyJ" * 4990 + "000001"  # the review's: a JWT prefix that never completes, 15 KB
KNOWN = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}


def raw_request(url: str, method: str, path: str) -> str:
    """Send one request exactly as given (httpx would upper-case the method); the status line of the answer."""
    parsed = httpx.URL(url)
    with socket.create_connection((parsed.host, parsed.port), timeout=30) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {parsed.host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while b"\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


def request_series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("integrations_api_request")]


def test_huge_and_many_distinct_methods_get_a_4xx_and_leave_logs_and_metrics_bounded(
    scale: Scale, module_lab: Lab, target: Target
):
    lab = module_lab
    with httpx.Client(base_url=target.url, timeout=30) as http:
        for method, path in (("WARMUP", "/healthz"), ("GET", "/healthz"), ("GET", "/metrics")):
            http.request(method, path)
        before = request_series(http.get("/metrics").text)
        for _ in range(4):
            status = raw_request(target.url, HUGE_METHOD, "/healthz")
            assert status.split(" ")[1].startswith("4"), status[:80]
        for n in range(scale.distinct_methods):
            resp = http.request(f"M{n}X", "/healthz")
            assert resp.status_code == 405, resp.text
        assert http.get("/healthz").status_code == 200
        text = http.get("/metrics").text
    after = request_series(text)
    assert len(after) == len(before), "no series for any new method"
    assert f'method="M{scale.distinct_methods - 1}X"' not in text
    api = next(p for p in lab.procs if p.name == "api")
    api.read()
    lines = [r for r in api.records if r.get("event") == "http.request"]
    methods = {r["method"] for r in lines}
    assert methods <= KNOWN, sorted(methods - KNOWN)[:3]
    assert max(len(line) for line in api.lines) < 4_096, "no log line carries the huge method"
    figure(
        f"6. fuzzing [{scale.name}]",
        distinct_methods=scale.distinct_methods,
        huge_methods=4,
        request_series=len(after),
        metrics_bytes=len(text),
    )
