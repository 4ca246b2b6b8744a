"""12. Weak inputs an operator or a stranger can give: list-like emails at `users create`, placeholder secrets.

Every service process refuses placeholder secrets, short admin keys and SMTP credentials without TLS at start
(exit 2, a message naming the variable, never its value), and `users create` refuses anything but one plain
mailbox, creating nothing. HEAD and GET on reconnect links are in test_08 (access).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from common.models import User
from tests.faults.evidence import figure
from tests.faults.lab import Lab, Proc
from tests.faults.scale import Scale

LIST_LIKE = [
    "victim,attacker@evil.example",
    "victim@example.com,attacker@evil.example",
    "victim@example.com; attacker@evil.example",
    "Victim <victim@example.com>",
    '"victim,attacker"@evil.example',
    "victim@example.com\nBcc: attacker@evil.example",
]
PLACEHOLDER = "change-me-too"


def finished(lab: Lab, proc: Proc, timeout: float = 60) -> tuple[int, str]:
    code = proc.popen.wait(timeout)
    return code, proc.log_path.read_text()


def test_users_create_refuses_list_like_emails_and_creates_nothing(scale: Scale, module_lab: Lab):
    lab = module_lab
    c = lab.container(broker=False, pool_size=2)
    with c.sessions() as s:
        before = s.scalar(select(func.count()).select_from(User))
    for email in LIST_LIKE:
        code, out = finished(
            lab, lab.start("cli", ["-m", "services.cli", "users", "create", "--email", email], lab.env())
        )
        assert code == 2, (email, out)
        assert "is not one email address" in out and "ik_" not in out, out
    with c.sessions() as s:
        assert s.scalar(select(func.count()).select_from(User)) == before
        assert not s.scalars(select(User.email).where(User.email.contains("evil.example"))).all()
    figure(f"12. weak inputs [{scale.name}]", list_like_emails_refused=len(LIST_LIKE))


@pytest.mark.parametrize(
    ("service", "env", "named"),
    [
        ("services.api", {"ADMIN_API_KEY": PLACEHOLDER}, "ADMIN_API_KEY is a placeholder"),
        ("services.api", {"ADMIN_API_KEY": "a-short-admin-key"}, "ADMIN_API_KEY must be at least 32 characters"),
        ("services.worker", {"BROKER_URL": f"amqp://guest:{PLACEHOLDER}@127.0.0.1:5672/%2F"}, "BROKER_URL"),
        ("services.scheduler", {"GOOGLE_CLIENT_SECRET": "password"}, "GOOGLE_CLIENT_SECRET is a placeholder"),
        ("services.notifier", {"SMTP_URL": "smtp://mailer:Xq9-long-password@127.0.0.1:2525"}, "no TLS"),
    ],
)
def test_services_refuse_weak_secrets_at_start(scale: Scale, module_lab: Lab, service: str, env: dict, named: str):
    lab = module_lab
    code, out = finished(lab, lab.start(service.split(".")[-1], ["-m", service], lab.env(**env)))
    assert code == 2, out
    assert named in out, out
    for value in env.values():
        secret = value.split(":")[2].split("@")[0] if "://" in value else value
        assert secret not in out, f"{service} printed the refused value"
