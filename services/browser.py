"""A page's form, read and submitted as a browser would: the demo and the tests press the reconnect page's button."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin


@dataclass(frozen=True)
class Form:
    """One `<form>`: where it goes, how, and the fields a browser sends as given (hidden ones included)."""

    method: str
    action: str
    fields: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = Form(a.get("method", "get").upper(), a.get("action", ""))
        elif tag == "input" and self._open is not None and a.get("name"):
            self._open.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._open is not None:
            self.forms.append(self._open)
            self._open = None


def one_form(html: str, page_url: str) -> Form:
    """The page's only form, its action made absolute against `page_url`; ValueError unless there is exactly one."""
    parser = _Forms()
    parser.feed(html)
    parser.close()
    if len(parser.forms) != 1:
        raise ValueError(f"expected one form on {page_url.split('?')[0]}, found {len(parser.forms)}")
    form = parser.forms[0]
    return Form(form.method, urljoin(page_url, form.action or page_url), dict(form.fields))
