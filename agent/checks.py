"""Success checks run after the loop ends: the site's JSON API, the URL, text on the page, a JS expression."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx

from agent.task import (
    Check,
    CommandCheck,
    FileJsonCheck,
    HttpJsonCheck,
    JsCheck,
    Task,
    TextPresentCheck,
    UrlMatchCheck,
    WindowTitleCheck,
)
from tools.executor import PageAbilities
from tracer.schema import CheckResult
from tracer.secrets import Scrubber

HTTP_CHECK_MAX_BYTES = 16 * 2**20  # an http_json check's answer, at most
JS_CHECK_LIMIT_MS = 10_000  # a js check's time limit: the task file is untrusted, its expression may never end
# The expression, like Playwright's page.evaluate: its value, or the value of calling it if it is a function.
_JS_CHECK = "(v => typeof v === 'function' ? v() : v)((0, eval)(%s))"


def run_checks(
    task: Task,
    page: PageAbilities | None,
    base_url: str | None,
    display: str | None = None,
) -> list[CheckResult]:
    """Evaluate every check of ``task``; an exception inside one check fails that check only.

    Details echo what the page or API answered, which may hold a secret (a password field's value, an item
    the agent typed the secret into): they are masked here, before anything is cut short, and again when
    the run is written.
    """
    scrub = Scrubber.from_secrets(task.secret_values())
    results = []
    for check in task.checks:
        description = check.description or _default_description(check)
        try:
            passed, detail = _run(check, task, page, base_url, display, scrub)
        except Exception as exc:  # a broken page or API must show as a failed check, not a crash
            passed, detail = False, f"{type(exc).__name__}: {exc}"
        results.append(
            CheckResult(
                type=check.type,
                description=scrub.scrub_text(task.render(description)),
                passed=passed,
                detail=scrub.scrub_text(detail),
            )
        )
    return results


def _run(
    check: Check,
    task: Task,
    page: PageAbilities | None,
    base_url: str | None,
    display: str | None,
    scrub: Scrubber,
) -> tuple[bool, str]:
    match check:
        case FileJsonCheck():
            path = Path(task.render_secret(check.path))
            if not path.is_file():
                return False, f"{path} does not exist"
            value = _at_path(json.loads(path.read_text(encoding="utf-8")), check.path_in_json)
            return _find_match(task, value, check.match, f"{path} does not match", scrub)
        case CommandCheck():
            argv = [task.render_secret(a) for a in check.argv]
            env = {**os.environ, **({"DISPLAY": display} if display else {})}
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
            return result.returncode == check.exit_code, f"exit code {result.returncode}"
        case WindowTitleCheck():
            xdotool = shutil.which("xdotool")
            if xdotool is None or display is None:
                return False, "needs xdotool and a display"
            text = task.render_secret(check.text)
            result = subprocess.run(
                [xdotool, "search", "--name", text],
                capture_output=True,
                text=True,
                timeout=10,
                env={**os.environ, "DISPLAY": display},
            )
            return result.returncode == 0 and bool(result.stdout.strip()), (
                "a window with that title exists" if result.returncode == 0 else "no window with that title"
            )
        case HttpJsonCheck():
            url = task.render_secret(check.url)
            if url.startswith("/"):
                if base_url is None:
                    return False, f"{url} is relative but the task has no site base URL"
                url = base_url + url
            status, answer = _get_bounded(url)
            if status != 200:
                return False, f"GET {url} answered {status}"
            value = _at_path(json.loads(answer), check.path)
            return _find_match(task, value, check.match, f"no item at {check.path or 'the top level'} matches", scrub)
        case UrlMatchCheck() if page is not None:
            url = page.page_url()
            pattern = task.render_secret(check.pattern, escape=re.escape)  # a value matches as written, dots and all
            return re.search(pattern, url) is not None, f"URL is {url}"
        case TextPresentCheck() if page is not None:
            text = task.render_secret(check.text)
            body = page.page_text()
            return text in body, "found on the page" if text in body else "not on the page"
        case JsCheck() if page is not None:
            # {name} is an input or a value setup saved; a secret stays a <secret> marker: the page is not trusted
            script = _JS_CHECK % json.dumps(task.render(check.expression))
            value = page.run_script(script, timeout_ms=JS_CHECK_LIMIT_MS)  # a loop or a promise that never ends stops
            shown = _json_short(_parsed(value.text), scrub) if value.text is not None else value.type
            return value.truthy, f"expression returned {shown}" + ("" if value.truthy else " (falsy: the check fails)")
        case UrlMatchCheck() | TextPresentCheck() | JsCheck():
            return False, f"a {check.type} check needs a browser page; this run has none"
    raise AssertionError(f"unhandled check {check!r}")


def _find_match(task: Task, value: Any, match: dict[str, Any], failure: str, scrub: Scrubber) -> tuple[bool, str]:
    """Pass when ``value`` (an object, or a list of them) has an item with every field of ``match``."""
    wanted = {k: task.render_secret(v) if isinstance(v, str) else v for k, v in match.items()}
    shown = {k: task.render(v) if isinstance(v, str) else v for k, v in match.items()}  # secrets as placeholders
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict) and all(_equal(item.get(k), v) for k, v in wanted.items()):
            return True, f"found {_short(item, scrub)}"
    # What was found first: the detail is cut to 300 characters and the wanted values are in the task file.
    return False, f"{failure}: got {_short(items, scrub)}; wanted {shown}"


def _at_path(data: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if isinstance(data, list) and part.isdigit():
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(f"path {path!r}: no {part!r}")
    return data


def _equal(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return actual == wanted
    if isinstance(wanted, (int, float)) or isinstance(actual, (int, float)):
        try:
            return abs(float(actual) - float(wanted)) < 1e-9
        except (TypeError, ValueError):
            return False
    return actual == wanted


def _short(value: Any, scrub: Scrubber, limit: int = 300) -> str:
    text = scrub.scrub_text(repr(value))  # before the cut, which could leave a short prefix the mask misses
    return text if len(text) <= limit else text[:limit] + "…"


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS settings, built once: a client builds them anew (loading every CA certificate, 48 ms of
    CPU), and each check is a client of its own; an eval runs thousands."""
    return httpx.create_ssl_context()


def _get_bounded(url: str) -> tuple[int, bytes]:
    """GET ``url``: its status and body, refused past HTTP_CHECK_MAX_BYTES (a site may answer without end)."""
    with httpx.stream("GET", url, timeout=10, verify=_tls()) as response:
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > HTTP_CHECK_MAX_BYTES:
                raise ValueError(
                    f"GET {url} answered more than {HTTP_CHECK_MAX_BYTES:,} bytes; an http_json check reads at most that"
                )
        return response.status_code, bytes(body)


def _parsed(text: str) -> Any:
    """The JSON the page sent back, or the text itself where it was cut short."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_short(value: Any, scrub: Scrubber, limit: int = 300) -> str:
    """The value the page gave, as JSON (what a JavaScript author reads), masked, then cut."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):  # circular structures cannot come back from the page; be safe anyway
        text = repr(value)
    text = scrub.scrub_text(text)
    return text if len(text) <= limit else text[:limit] + "…"


def _default_description(check: Check) -> str:
    match check:
        case HttpJsonCheck():
            return f"GET {check.url} has an item matching {check.match}"
        case UrlMatchCheck():
            return f"URL matches {check.pattern}"
        case TextPresentCheck():
            return f"page shows {check.text!r}"
        case JsCheck():
            return f"{check.expression} is true"
        case FileJsonCheck():
            return f"{check.path} holds {check.match}"
        case CommandCheck():
            return f"{' '.join(check.argv)} exits with {check.exit_code}"
        case WindowTitleCheck():
            return f"a window titled {check.text!r} is open"
    return check.type
