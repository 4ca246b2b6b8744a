"""Why Google stopped accepting a connection, in words a user can act on (emails and the Integrations page)."""

from __future__ import annotations

# Why Google stopped accepting the connection, in words a user can act on.
REASONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "invalid_grant": (
        "Google no longer accepts our access to your account. This usually means one of these:",
        (
            "access was removed in your Google Account (Security, third-party apps with account access);",
            "our app is still in Google's testing mode, where Google ends every connection after 7 days;",
            "the connection went unused for 6 months, so Google ended it;",
            "your Google account password was changed.",
        ),
    ),
    "invalid_rapt": (
        "Your organisation's Google Workspace policy asks you to sign in again from time to time "
        "(a re-authentication policy), and that time has come.",
        (),
    ),
    "missing_scope": (
        "We are missing the permission to manage your Business Profile: the box for it was left "
        "unticked on Google's consent screen, or the permission was removed since.",
        (),
    ),
    "no_refresh_token": (
        "Google did not give us offline access, which we need to keep your data up to date while you are away.",
        (),
    ),
}
REASONS["permission_denied"] = REASONS["missing_scope"]
FALLBACK = ("Google asked for you to sign in again before we can keep syncing.", ())


def plain_reason(reason: str | None) -> tuple[str, tuple[str, ...]]:
    """What people read about a broken connection: a sentence, and the usual causes when there are several."""
    return REASONS.get(reason or "", FALLBACK)
