"""Playwright executor on the system Chromium: perceive (screenshot), act, and wait for the page to settle.

Usage::

    with BrowserExecutor(BrowserSettings(), files={"main_image": Path("img.png")}) as browser:
        browser.goto("http://127.0.0.1:8000/login")
        observation = browser.perceive()
        outcome = browser.act(LeftClick(action="left_click", coordinate=[500, 400]))
"""

from __future__ import annotations

import atexit
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from tools import actions as A
from tools.actions import ActionError
from tools.capture import PageCapture, png_size
from tools.chromium import LAUNCH_ARGS, find_chromium
from tools.coords import CoordinateAudit, CoordinateMode
from tools.errors import HarnessError
from tools.executor import SECRET_PATTERN, BaseExecutor, BudgetSpent, budget_cut_off
from tools.keys import playwright_chord
from tools.keytext import key_events, key_runs
from tools.navigation import NavigationWatch, PageScriptError, PageTimeout
from tools.script_watchdog import ScriptWatchdog, stop_if_busy
from tools.secret_destination import frame_refusal, hidden_focus_refusal, key_frames, refusal
from tools.views import (
    MAX_DEVICE_PIXELS,
    MAX_DIALOG_MESSAGE,
    TAB_CLOSED,
    BrowserSettings,
    DialogSeen,
    ElementInfo,
    Located,
    Observation,
    Outcome,
    PageEvents,
    ScriptValue,
    ScrollHint,
    SettlePolicy,
    Target,
)

__all__ = [
    "MAX_DEVICE_PIXELS",
    "SECRET_PATTERN",
    "BrowserExecutor",
    "BrowserSettings",
    "BudgetSpent",
    "PageScriptError",
    "PageTimeout",
    "SettlePolicy",
    "StartPageError",
    "Target",
    "budget_cut_off",
]

# The focused field (through open shadow roots) draws its text as discs: Chromium's -webkit-text-security, what a
# password field uses. Only a field: a page's body is not hidden wholesale.
_HIDE_FOCUSED_TEXT = """() => {
  let el = document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  if (!el || !(el.isContentEditable || el.tagName === 'INPUT' || el.tagName === 'TEXTAREA')) return false;
  el.style.setProperty('-webkit-text-security', 'disc', 'important');
  return true;
}"""
# Where a click on an element lands on it: a point inside the part of it that is on screen and inside every ancestor
# that clips it (a list box scrolled away from it), where the element itself (or something inside it) is on top;
# the point ``at`` asks for first (Target.at), else the middle, then a grid. Else how to scroll the nearest clipping
# ancestor that can scroll to bring it into view, or what covers it. Playwright's click only waits for the middle.
_WHERE_TO_CLICK = """(el, at) => {
  const r = el.getBoundingClientRect();
  let [left, top, right, bottom] = [r.left, r.top, r.right, r.bottom];
  let scroll = null;
  for (let a = el.parentElement; a && a !== document.body && a !== document.documentElement; a = a.parentElement) {
    const style = getComputedStyle(a);
    if (style.overflowX === 'visible' && style.overflowY === 'visible') continue;
    const ar = a.getBoundingClientRect();
    const cl = ar.left + a.clientLeft, ct = ar.top + a.clientTop, cr = cl + a.clientWidth, cb = ct + a.clientHeight;
    const outside = r.top < ct - 1 || r.bottom > cb + 1 || r.left < cl - 1 || r.right > cr + 1;
    const scrolls = a.scrollHeight > a.clientHeight + 1 || a.scrollWidth > a.clientWidth + 1;
    if (!scroll && outside && scrolls) {
      const at = [(Math.max(cl, 0) + Math.min(cr, innerWidth)) / 2, (Math.max(ct, 0) + Math.min(cb, innerHeight)) / 2];
      scroll = {at, dx: Math.round((r.left + r.right - cl - cr) / 2), dy: Math.round((r.top + r.bottom - ct - cb) / 2)};
    }
    [left, top, right, bottom] = [Math.max(left, cl), Math.max(top, ct), Math.min(right, cr), Math.min(bottom, cb)];
  }
  [left, top, right, bottom] = [Math.max(left, 0), Math.max(top, 0), Math.min(right, innerWidth), Math.min(bottom, innerHeight)];
  const box = [r.left, r.top, r.width, r.height];
  if (scroll || right - left < 1 || bottom - top < 1) return {box, point: null, scroll, covered: null};
  const root = el.getRootNode();
  const where = root.elementFromPoint ? root : document;
  const points = [[(left + right) / 2, (top + bottom) / 2]];
  if (at) {  // the point asked for, where it is in view; else the nearest in view
    const x = r.left + r.width * at[0], y = r.top + r.height * at[1];
    points.unshift([Math.min(Math.max(x, left + 1), right - 1), Math.min(Math.max(y, top + 1), bottom - 1)]);
  }
  for (const fy of [0.5, 0.25, 0.75, 0.1, 0.9]) for (const fx of [0.5, 0.25, 0.75, 0.1, 0.9]) {
    points.push([left + (right - left) * fx, top + (bottom - top) * fy]);
  }
  let covered = null;
  for (const [x, y] of points) {
    const hit = where.elementFromPoint(x, y);
    if (hit && (hit === el || el.contains(hit))) return {box, point: [x, y], scroll: null, covered: null};
    if (!covered && hit) {
      const text = (hit.innerText || hit.value || '').trim().replace(/\\s+/g, ' ').slice(0, 60);
      const tag = '<' + hit.tagName.toLowerCase() + (hit.id ? ' id=' + hit.id : '') + '>';
      covered = tag + (text ? ' ' + JSON.stringify(text) : '');
    }
  }
  return {box, point: null, scroll: null, covered};
}"""
MAX_COVERED = 120  # characters saying what covers a target
# A secret's characters, inserted one at a time where the focus is in this document, in one script (see _type_secret):
# a field that moves the focus on to the next one on input (a one-time code's boxes) gets them as typed keys would
# give them, and each field a character goes into draws discs first. How many went in: one that could not (no
# field has the focus in this document any more) ends it.
_INSERT_TEXT = f"""(value) => {{
  const hide = {_HIDE_FOCUSED_TEXT};
  let typed = 0;
  for (const char of value) {{
    hide();
    if (!document.execCommand('insertText', false, char)) break;
    typed += 1;
  }}
  return typed;
}}"""
# The same, for the element ``this`` (found through closed shadow roots: NavigationWatch.call_on_focused).
_HIDE_THIS_FIELD = """function () {
  if (!(this.isContentEditable || this.tagName === 'INPUT' || this.tagName === 'TEXTAREA')) return false;
  this.style.setProperty('-webkit-text-security', 'disc', 'important');
  return true;
}"""
# Every field whose value holds one of the secrets, and every element whose own text does, draws its text as discs:
# a page may show a secret where no key was typed (a form re-rendered with the values after a validation error,
# a settings page showing the key). A <select> showing one as its choice, and an image whose alt text holds one, draw
# their text transparent. Run in Glassbox's isolated world, before each capture. Open shadow roots too.
# A page may also write the secret between this script and the capture's frame (a search box echoing what was typed
# after a 20 ms debounce did in 4 screenshots of 10): a MutationObserver, kept by the document, masks what is added
# or changed from then on. Its callback runs as a microtask of the task that wrote the text, before any frame.
_MASK_SECRETS = """(secrets) => {
  const hide = el => el && el.style && el.style.setProperty('-webkit-text-security', 'disc', 'important');
  const holds = text => !!text && secrets.some(s => text.includes(s));
  const blank = el => el.style.setProperty('color', 'transparent', 'important');  // discs do not apply there
  const visit = root => {
    for (const el of root.querySelectorAll('input, textarea')) if (holds(el.value)) hide(el);
    for (const el of root.querySelectorAll('select')) if (holds(el.selectedOptions[0]?.text)) blank(el);
    for (const el of root.querySelectorAll('img[alt]')) if (holds(el.alt)) blank(el);  // drawn when it fails to load
    if (holds(root.textContent)) {  // the walk over text nodes only where a secret is in the text at all
      const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      for (let t = walk.nextNode(); t; t = walk.nextNode()) if (holds(t.data)) hide(t.parentElement);
    }
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) visit(el.shadowRoot);
  };
  if (!globalThis.__glassboxMask) {
    globalThis.__glassboxMask = new MutationObserver(records => {
      for (const r of records) {
        if (r.type === 'characterData') { if (holds(r.target.data)) hide(r.target.parentElement); continue; }
        for (const node of r.addedNodes) {
          if (node.nodeType === Node.TEXT_NODE) { if (holds(node.data)) hide(node.parentElement); }
          else if (node.nodeType === Node.ELEMENT_NODE) { if (holds(node.value)) hide(node); visit(node); }
        }
      }
    });
    globalThis.__glassboxMask.observe(document, {subtree: true, childList: true, characterData: true});
  }
  if (document.documentElement) visit(document.documentElement);
}"""
# innerText reads masked text as discs too: ``read()`` runs with the masks lifted, and they are put back in the same
# task, so no frame is ever drawn without them. For reading the page's text (checks, the element under a click).
_UNMASKED = """(read) => {
  const masked = [...document.querySelectorAll('[style]')].filter(el =>
    el.style.getPropertyValue('-webkit-text-security') === 'disc' && el.style.getPropertyPriority('-webkit-text-security'));
  for (const el of masked) el.style.removeProperty('-webkit-text-security');
  try { return read(); }
  finally { for (const el of masked) el.style.setProperty('-webkit-text-security', 'disc', 'important'); }
}"""
# The text a person sees: the body's, then that of open shadow roots (innerText does not go into them) and of
# same-origin frames, each once; a bounded walk (a page of a million elements is read in part, not for minutes).
_ALL_TEXT = """() => {
  if (!document.body) return '';
  const parts = [document.body.innerText];
  let budget = 200000;
  const seen = new Set();
  const walk = (root) => {
    if (!root || seen.has(root)) return;
    seen.add(root);
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT);
    for (let el = walker.nextNode(); el && budget-- > 0; el = walker.nextNode()) {
      if (el.shadowRoot) {
        parts.push([...el.shadowRoot.children].map(c => c.innerText || c.textContent || '').join('\\n'));
        walk(el.shadowRoot);
      }
      if (el.tagName === 'IFRAME' || el.tagName === 'FRAME') {
        let body = null;
        try { body = el.contentDocument && el.contentDocument.body; } catch (e) {}  // another origin's: not ours
        if (body) { parts.push(body.innerText); walk(body); }
      }
    }
  };
  walk(document.body);
  return parts.filter(Boolean).join('\\n');
}"""
_PAGE_TEXT = f"({_UNMASKED})({_ALL_TEXT})"
MIN_MASKED_SECRET = 4  # characters: a shorter secret would hide text everywhere it happens to occur
LEAVE_DIALOG_GRACE_MS = 50  # after a goto_url the browser refused, for the leave-page dialog's event to arrive
_ELEMENT_AT = """([x, y]) => {
  const el = document.elementFromPoint(x, y);
  if (!el) return null;
  const r = el.getBoundingClientRect();
  const text = (el.innerText || el.value || el.getAttribute('aria-label') || el.getAttribute('alt') || '').trim();
  let label = '';
  if (el.labels && el.labels.length) label = el.labels[0].innerText || '';
  const by = el.getAttribute('aria-labelledby');
  if (!label && by) label = by.split(/\\s+/).map(id => (document.getElementById(id) || {}).innerText || '').join(' ');
  if (!label) label = el.getAttribute('aria-label') || el.getAttribute('placeholder') || el.getAttribute('title') || '';
  label = String(label).trim();
  return {tag: el.tagName.toLowerCase().slice(0, 200), text: String(text).slice(0, 200),
          label: label === text ? '' : label.slice(0, 200), box: {x: r.x, y: r.y, width: r.width, height: r.height}};
}"""
# Resolves when every finite animation and transition has finished (true), or after ``ms`` (false). One frame
# first, so that a transition the action's style change starts is running by the time it looks. Endless ones
# (spinners) are left out: they never finish.
_ANIMATIONS_DONE = """async (ms) => {
  const end = performance.now() + ms;
  await new Promise(r => requestAnimationFrame(() => r()));
  for (;;) {
    const busy = document.getAnimations().filter(a => (a.playState === 'running' || a.pending)
      && Number.isFinite(a.effect && a.effect.getComputedTiming ? a.effect.getComputedTiming().endTime : Infinity));
    if (!busy.length) return true;
    const left = end - performance.now();
    if (left <= 0) return false;
    await Promise.race([Promise.all(busy.map(a => a.finished.catch(() => null))), new Promise(r => setTimeout(r, left))]);
  }
}"""
# A script run by :meth:`BrowserExecutor.run_script`: its completion value (awaited if a promise, at most
# the time limit) as JSON text, cut in the page so that a huge value never crosses the wire. Indirect eval runs
# it in the page's global scope, statements and all, like the DevTools console.
_SCRIPT = """(async () => {
  const value = await Promise.race([
    Promise.resolve((0, eval)(%(script)s)),
    new Promise((_, reject) => setTimeout(() => reject(new Error(%(timeout)s)), %(ms)d)),
  ]);
  let text;
  try { text = JSON.stringify(value); } catch (e) { text = String(value); }
  return {type: typeof value, truthy: !!value, text: text === undefined ? null : String(text).slice(0, %(cut)d)};
})()"""
_SCRIPT_TIMEOUT = "__glassbox_script_timeout__"
SCRIPT_TEXT_LIMIT = 4000  # characters of a script's JSON value brought back from the page
_NAVIGATED = ("context was destroyed", "cannot find context", "navigated or closed")  # DevTools, mid-navigation
MAX_TRACKED_REQUESTS = 1000  # in-flight requests remembered for network idle (a page may leak unfinished ones)
NETWORK_QUIET_S = 0.1  # network idle: nothing in flight and no request started or ended for this long
TYPE_CHUNK = 32  # characters typed between two looks at the run's deadline
# The screenshot the settle took serves the next perceive when that comes within this long and nothing was
# done to the page in between; else perceive captures afresh (a human gate, a long pause: the screen may move).
SETTLED_SHOT_MAX_AGE_S = 0.5
START_PAGE_TIMEOUT_MS = 30_000  # Playwright's own default for a navigation
MAX_TAB_URL = 2000  # characters of a followed tab's URL said in the step
MAX_DIALOGS_KEPT = 20  # dialogs a step records (all are answered); a count says how many more there were
MAX_BLOCKED_SAID = 10  # tabs a page opened by itself (closed unseen) whose URLs a step lists: the first ones
DOWNLOAD_GRACE_S = 0.1  # after a navigation that did not load: how long a download may take to say it began


class StartPageError(HarnessError, RuntimeError):
    """The task's start page could not be opened (nothing listening, refused, timed out): no run can start."""


@dataclass(frozen=True)
class _SettledShot:
    """The viewport as the settle after an action left it, kept for the next perceive."""

    png: bytes
    title: str | None  # read with the capture; None: perceive reads it
    navigations: int  # the navigation count when taken: a later navigation makes it stale
    at: float  # time.monotonic() when taken
    taken_at: datetime


def _launch(*, headless: bool) -> tuple[Any, Any]:
    """Start Playwright and the system Chromium: (playwright, browser)."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium(headless=headless)
    pw = sync_playwright().start()
    try:
        return pw, pw.chromium.launch(executable_path=str(executable), headless=headless, args=LAUNCH_ARGS)
    except Exception:
        pw.stop()
        raise


class _SharedBrowser:
    """One Chromium per process (and per headless / headed), launched on first use and again if it died."""

    def __init__(self) -> None:
        self._open: dict[bool, tuple[Any, Any]] = {}

    def browser(self, *, headless: bool) -> Any:
        pw, browser = self._open.pop(headless, (None, None))
        if browser is not None and browser.is_connected():
            self._open[headless] = (pw, browser)
            return browser
        if pw is not None:
            self._stop(pw, browser)  # died: its driver goes too, before a fresh launch (which may fail in turn)
        pw, browser = self._open[headless] = _launch(headless=headless)
        return browser

    def close(self) -> None:
        for pw, browser in self._open.values():
            self._stop(pw, browser)
        self._open.clear()

    @staticmethod
    def _stop(pw: Any, browser: Any) -> None:
        for stop in (browser.close, pw.stop):
            try:
                stop()
            except Exception:  # already gone
                pass


_shared: _SharedBrowser | None = None


def share_browser_between_runs() -> None:
    """From now on, every :class:`BrowserExecutor` in this process drives one Chromium kept open between runs; each
    run still gets a browser context of its own (its own cookies, storage and cache) and closes only that.

    For a process that runs many runs one after another (an eval worker): a Chromium launch costs about a second
    of CPU, more than a third of a bundled episode's. Playwright's sync API belongs to the thread that started it,
    so runs must come from one thread. The browser closes when the process exits."""
    global _shared
    if _shared is None:
        _shared = _SharedBrowser()
        atexit.register(_shared.close)


class BrowserExecutor(BaseExecutor):
    """Drives one Chromium page. Secrets and files are given here, never to the policy."""

    kind = "browser"
    type_chunk = TYPE_CHUNK

    def __init__(
        self,
        settings: BrowserSettings | None = None,
        *,
        files: dict[str, Path] | None = None,
        secrets: dict[str, str] | None = None,
        allowed_origins: list[str] | None = None,
        coordinate_mode: CoordinateMode = CoordinateMode.relative_1000,
        coordinate_divisor: float = 1000.0,
        settle: SettlePolicy | None = None,
    ) -> None:
        super().__init__(files=files, secrets=secrets, coordinate_mode=coordinate_mode, coordinate_divisor=coordinate_divisor)
        self.settings = settings or BrowserSettings()
        self.settle_policy = settle or SettlePolicy()
        self.allowed_origins = [_origin(o) for o in (allowed_origins or [])]
        self._pw: Any = None
        self._browser: Any = None
        self._context: Any = None
        self.page: Any = None
        self._navigations = 0
        self._loads = 0
        self._chooser: Any = None
        self._dialogs: list[DialogSeen] = []  # answered since the last action's outcome (the first MAX_DIALOGS_KEPT)
        self._dialogs_more = 0  # and how many more than those
        self._opened: list[Any] = []  # tabs the page opened, not yet followed
        self._tab_change: str | None = None  # what the last action did to the tabs, for its outcome
        self._blocked: list[str] = []  # URLs of the tabs closed unseen since the last action's outcome (_follow_tabs)
        self._blocked_more = 0  # and how many more than those
        # Of the watch's windows asked for with a gesture, those matched with a tab (or given up on after a step).
        self._windows_matched = 0
        self._window_waited = False  # one asked for is unmatched since the previous settle
        self._downloads: list[str] = []  # names of the files downloaded since the last action's outcome
        self._download_events = 0  # Playwright's download events, ever
        self._downloads_at_mark = (0, 0)  # (the watch's downloads, download events) when the action began
        self._start_url: str | None = None  # the target's URL: relative goto_url URLs resolve against it
        self._watch: NavigationWatch | None = None  # its DevTools session also runs scripts with a time limit
        self._in_flight: dict[Any, float] = {}  # requests started and not yet finished or failed -> when started
        self._action_at = 0.0  # time.monotonic() when the current action began (network idle looks from there)
        self._network_at = 0.0  # time.monotonic() of the last request event
        self._capture: PageCapture | None = None
        self._settled_shot: _SettledShot | None = None
        self._shoot_after_settle = False  # whether the current action can change the screen
        self._screen_untouched = False  # the current action is one that does nothing on screen (terminate, answer)
        self._load_stopped: str | None = None  # the URL whose loading the last settle stopped (it never answered)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "BrowserExecutor":
        try:
            if _shared is not None:  # a worker's Chromium, kept between its runs: each run gets a context of its own
                self._browser = _shared.browser(headless=not self.settings.headed)
            else:
                self._pw, self._browser = _launch(headless=not self.settings.headed)
            width, height = self.settings.viewport
            self._context = self._browser.new_context(
                viewport={"width": width, "height": height},
                device_scale_factor=self.settings.device_scale_factor,
                locale=self.settings.locale,
                timezone_id=self.settings.timezone,
                accept_downloads=False,
            )
            self._context.set_default_timeout(self.settings.action_timeout_ms)
            self._attach(self._context.new_page())
        except Exception:
            self.close()
            raise
        self._context.on("page", self._on_new_tab)  # a new tab (target=_blank, window.open): followed in _settle
        return self

    def _attach(self, page: Any) -> None:
        """Act on ``page`` from now on: its own DevTools sessions (navigation watch, capture) and event listeners."""
        if self.page is not None:
            for event, listener in self._page_listeners():
                try:
                    self.page.remove_listener(event, listener)
                except Exception:  # the page is closed
                    pass
        for old in (self._watch, self._capture):
            if old is not None:
                old.close()
        self._watch = self._capture = None
        self.page = page
        width, height = self.settings.viewport
        if page.viewport_size != {"width": width, "height": height}:
            # A popup asks for its own size (window.open(url, name, 'popup,width=200,height=150')): every screen the
            # agent sees is the one its coordinates are mapped onto, the task's viewport.
            page.set_viewport_size({"width": width, "height": height})
        self._watch = NavigationWatch(self._context.new_cdp_session(page), timeout_ms=self.settings.settle_timeout_ms)
        self._windows_matched, self._window_waited = 0, False
        self._capture = PageCapture(
            page,
            timeout_ms=self.settings.action_timeout_ms,
            device_scale_factor=self.settings.device_scale_factor,
            viewport=self.settings.viewport,
        )
        for event, listener in self._page_listeners():
            page.on(event, listener)

    def _page_listeners(self) -> list[tuple[str, Any]]:
        return [
            ("request", self._on_request),
            ("requestfinished", self._on_request_done),
            ("requestfailed", self._on_request_done),
            ("load", self._on_load),
            # A listener from the start keeps file-chooser interception on; enabling it per upload (as
            # expect_file_chooser does) races with the click, and the chooser is then sometimes missed.
            ("filechooser", self._on_file_chooser),
            ("dialog", self._on_dialog),  # answered at once (a dialog blocks the page) and recorded
            ("download", self._on_download),
        ]

    def close(self) -> None:
        if self._watch is not None:
            stop_if_busy(self._watch.session)  # a script that never returns holds the close for minutes
        # The sessions are not detached one by one: closing the context (or browser) below ends them, and a detach
        # is not answered while a page is still loading.
        self._capture = None
        # Our own browser is closed whole, contexts and all, whatever its pages do (a busy tab behind does not hold
        # that, as it would a context's close); a shared one stays, and only this run's context is closed.
        closer = self._browser if self._pw is not None else self._context
        if closer is not None:
            try:
                closer.close()
            except Exception:  # closing a crashed browser must not hide the original error
                pass
        if self._pw is not None:
            self._pw.stop()
        self._pw = self._browser = self._context = self.page = self._watch = None

    # -- perceive ------------------------------------------------------------------------------
    def _watchdog(self) -> ScriptWatchdog:
        """Stops the page's script when it holds the page past half the action time limit (tools.script_watchdog):
        before the DevTools calls waiting on the page (a capture, a frame) give up at the limit itself."""
        watch = self._watch
        session = watch.session if watch is not None else None  # None: not started, no watchdog
        navigating = (lambda: watch.pending) if watch is not None else None
        return ScriptWatchdog(self.page, session, limit_s=self.settings.action_timeout_ms / 2000, navigating=navigating)

    def act(self, action: A.Action, *, deadline: float | None = None) -> Outcome:
        with self._watchdog() as watchdog:
            outcome = super().act(action, deadline=deadline)
        if self._load_stopped is not None and outcome.status == "ok":
            waited = max(self.settings.settle_timeout_ms, START_PAGE_TIMEOUT_MS) / 1000
            error = (
                f"the page it led to did not answer within {waited:g} s (or the run's time budget), so its loading was "
                f"stopped (as Esc does) and {self._load_stopped[:MAX_TAB_URL]} stays on screen; "
                "browser.settle_timeout_ms above 30000 gives a slow site more time"
            )
            outcome = outcome.model_copy(update={"status": "error", "error": error})
        elif watchdog.stopped and outcome.status == "ok":
            error = (
                f"the page did not respond for {watchdog.limit_s:g} s after the {action.action} (a script that does not "
                "return, e.g. an endless loop or dialogs without end): Glassbox stopped the page's script"
            )
            outcome = outcome.model_copy(update={"status": "error", "error": error})
        return outcome

    def perceive(self) -> Observation:
        with self._watchdog():  # a page busy since the last action (a timer's endless loop) is stopped, then seen
            return self._perceive()

    def _perceive(self) -> Observation:
        shot, self._settled_shot = self._settled_shot, None
        title: str | None = None
        if shot is not None and shot.navigations == self._navigations and time.monotonic() - shot.at <= SETTLED_SHOT_MAX_AGE_S:
            png, title, taken_at = shot.png, shot.title, shot.taken_at  # the settle's capture: the action's effect
        else:
            self._mask_secrets()
            # One DevTools capture (tools.capture): page.screenshot()'s PNG without its extra round trips.
            if self._capture is not None:
                png, title = self._capture.png_and_title()  # the title in the same round trip, where it can be
            else:
                png = self.page.screenshot(type="png")
            taken_at = datetime.now(timezone.utc)
        width, height = self.settings.viewport
        scale = self.settings.device_scale_factor
        if title is None:
            try:
                title = self.page.title()
            except Exception:  # the page may be navigating; the title is informational
                title = None
        return Observation(
            screenshot_png=png,
            screenshot_size=png_size(png),  # the header's, as captured: no decoding
            css_size=(width, height),
            device_scale_factor=scale,
            url=self.page.url,
            title=title,
            taken_at=taken_at,
        )

    def element_at(self, css: tuple[int, int]) -> ElementInfo | None:
        """The element under a CSS pixel (tag, text, label, box), or None (also when the page answers nonsense).
        Asked in Glassbox's isolated world (tools.navigation): the page's scripts cannot answer for the browser."""
        if self._watch is None:
            return None
        try:
            info = self._watch.evaluate(f"({_UNMASKED})(() => ({_ELEMENT_AT})({json.dumps(list(css))}))")
            return ElementInfo.model_validate(info) if info else None
        except Exception:
            return None

    # -- page abilities (tools.executor.PageAbilities) -----------------------------------------
    def goto(self, url: str, *, timeout_ms: int = START_PAGE_TIMEOUT_MS) -> None:
        """Open ``url`` (the task's start page) and wait for it to load; :class:`StartPageError` if it cannot."""
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self._settled_shot = None
        if self._start_url is None:
            self._start_url = url
        try:
            self.page.goto(url, wait_until="load", timeout=timeout_ms)
        except PlaywrightTimeout:
            raise StartPageError(f"the start page {url} did not load within {timeout_ms / 1000:.0f} s") from None
        except PlaywrightError as exc:  # net::ERR_CONNECTION_REFUSED, ERR_NAME_NOT_RESOLVED, ERR_UNSAFE_PORT ...
            reason = _first_line(exc).removeprefix("Page.goto: ").removesuffix(f" at {url}")
            raise StartPageError(f"cannot open the start page {url}: {reason}") from None

    def locate(self, target: Target) -> Located | None:
        """The first visible match (CSS pixels, relative to the viewport) and where a click would land on it
        (:class:`tools.views.Located`), or None. The page itself is searched first, then its frames (an embedded
        form, an editor), each found where it shows on the page."""
        if target.selector is None and not (target.label or target.role or target.text):
            raise ValueError("a target needs one of selector, text, label or role")
        found = self._locate_in(self.page.main_frame, target)
        if found is not None:
            return found
        for frame in self.page.frames[1:MAX_FRAMES_SEARCHED]:
            try:
                offset = _frame_offset(frame)
                if offset is None:
                    continue  # not shown (display: none, detached): nothing in it can be clicked
                found = self._locate_in(frame, target)
            except Exception:  # the frame went away meanwhile
                continue
            if found is not None:
                return _shifted(found, offset)
        return None

    def _locate_in(self, frame: Any, target: Target) -> Located | None:
        if target.selector and target.text:
            # one of several like elements by its whole text: `.alink` saying "in", not every link containing it
            locator = frame.locator(target.selector).filter(has_text=re.compile(rf"^\s*{re.escape(target.text)}\s*$"))
        elif target.selector:
            locator = frame.locator(target.selector)
        elif target.label:
            locator = frame.get_by_label(target.label, exact=True)
        elif target.role:
            locator = frame.get_by_role(target.role, name=target.name, exact=True)
        else:
            locator = frame.get_by_text(target.text, exact=True)
        for i in range(min(locator.count(), 20)):
            candidate = locator.nth(i)
            if candidate.is_visible():
                try:
                    found = candidate.evaluate(_WHERE_TO_CLICK, list(target.at) if target.at else None)
                except Exception:  # gone meanwhile: the next candidate
                    continue
                x, y, width, height = found["box"]
                if width > 0 and height > 0:
                    scroll = found.get("scroll")
                    return Located(
                        x=x,
                        y=y,
                        width=width,
                        height=height,
                        point=tuple(found["point"]) if found.get("point") else None,
                        scroll=ScrollHint(at=tuple(scroll["at"]), dx=scroll["dx"], dy=scroll["dy"]) if scroll else None,
                        covered_by=(str(found["covered"])[:MAX_COVERED] if found.get("covered") else None),
                    )
        return None

    def page_url(self) -> str:
        return str(self.page.url)

    def page_text(self) -> str:
        """The page's text as shown (``innerText``), with secrets Glassbox drew as discs read as the page holds them:
        a check looks at the page, not at the mask. One synchronous script: no frame is drawn unmasked."""
        if self._watch is not None:
            try:
                return str(self._watch.evaluate(_PAGE_TEXT) or "")
            except Exception:  # the document is going away: Playwright's reading waits for the next one
                pass
        return str(self.page.inner_text("body"))

    def resolve_url(self, url: str) -> str:
        """``url`` made absolute against the target's URL (the start page), as a relative link would be."""
        base = self._start_url or (self.page.url if self.page is not None else "")
        return urljoin(base, url) if base else url

    def check_url_allowed(self, url: str) -> None:
        """Raise :class:`ActionError` unless ``url``'s origin is one of the allowed origins.

        ``file:`` URLs are never the agent's to open: the harness opens a task's local pages (start page,
        setup), each checked against the task's folders; the agent could otherwise read any file on disk.
        """
        if urlsplit(url).scheme.lower() == "file":
            raise ActionError(f"{url!r}: goto_url cannot open file: URLs; only the task's start page and setup open local pages")
        origin = _origin(url)
        if origin not in self.allowed_origins:
            allowed = ", ".join(self.allowed_origins) or "none"
            raise ActionError(f"{url!r} is outside the allowed origins ({allowed})")

    # -- task setup: scripts and waits with a time limit ----------------------------------------
    def run_script(self, script: str, *, timeout_ms: int) -> ScriptValue:
        """Run ``script`` (statements; its completion value, awaited if a promise, is the result) in the page.

        Stops after ``timeout_ms`` also when the script never yields (``while(true){}``): DevTools terminates
        it. Raises :class:`PageTimeout` or :class:`PageScriptError` (the script threw) with a one-line reason.
        """
        self._settled_shot = None  # the script may change the page
        expression = _SCRIPT % {
            "script": json.dumps(script),
            "timeout": json.dumps(_SCRIPT_TIMEOUT),
            "ms": timeout_ms,
            "cut": SCRIPT_TEXT_LIMIT,
        }
        assert self._watch is not None, "the browser is not started"
        started = time.monotonic()
        try:
            answer = self._watch.session.send(
                "Runtime.evaluate",
                {"expression": expression, "awaitPromise": True, "returnByValue": True, "timeout": timeout_ms},
            )
        except Exception as exc:
            # DevTools answers a terminated script with "Internal error"; a navigation destroys the context.
            if time.monotonic() - started >= timeout_ms / 1000 * 0.9:
                raise PageTimeout(f"the script did not finish within {timeout_ms} ms") from None
            raise PageScriptError(_first_line(exc)) from None
        details = answer.get("exceptionDetails")
        if details:
            message = _exception_text(details)
            if _SCRIPT_TIMEOUT in message:
                raise PageTimeout(f"the script's promise did not settle within {timeout_ms} ms")
            raise PageScriptError(f"the script threw: {message}")
        value = answer.get("result", {}).get("value") or {}
        return ScriptValue(str(value.get("type", "undefined")), bool(value.get("truthy")), value.get("text"))

    def wait_for_script(self, expression: str, *, timeout_ms: int) -> ScriptValue:
        """Evaluate ``expression`` until it is truthy (every 50 ms, and across navigations); its value.

        Raises :class:`PageTimeout` naming the last value seen, or :class:`PageScriptError` if it throws.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        last: ScriptValue | None = None
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                seen = "" if last is None else f"; it was {last.text if last.text is not None else last.type}"
                raise PageTimeout(f"the expression was not true within {timeout_ms} ms{seen}")
            try:
                last = self.run_script(expression, timeout_ms=max(left_ms, 1))
            except PageTimeout:
                continue  # out of time: the loop says so with the last value seen
            except PageScriptError as exc:
                if not any(sign in str(exc).lower() for sign in _NAVIGATED):
                    raise
                last = None  # a navigation replaced the document: look again in the new one
            if last is not None and last.truthy:
                return last
            self.page.wait_for_timeout(min(50, max(left_ms, 1)))

    def wait_for_selector(self, selector: str, *, state: str = "visible", timeout_ms: int) -> None:
        """Wait until an element matching ``selector`` is in ``state`` (visible, attached, hidden, detached)."""
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self._settled_shot = None
        try:
            self.page.wait_for_selector(selector, state=state, timeout=timeout_ms)
        except PlaywrightTimeout:
            raise PageTimeout(f"no element matching {selector!r} was {state} within {timeout_ms} ms") from None
        except PlaywrightError as exc:
            raise PageScriptError(_first_line(exc)) from None

    def open_url(self, url: str, *, timeout_ms: int) -> None:
        """Open ``url`` and wait for it to load. The caller has checked that the task may open it."""
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self._settled_shot = None
        try:
            self.page.goto(url, wait_until="load", timeout=timeout_ms)
        except PlaywrightTimeout:
            raise PageTimeout(f"{url} did not load within {timeout_ms} ms") from None
        except PlaywrightError as exc:
            raise PageScriptError(_first_line(exc)) from None

    # -- act (the rest is BaseExecutor's) ------------------------------------------------------
    def _screen(self) -> tuple[tuple[int, int], float]:
        return self.settings.viewport, self.settings.device_scale_factor

    def _perform_input(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        mouse, keyboard = self.page.mouse, self.page.keyboard
        x, y = audit.css if audit else (None, None)
        match action:
            case A.LeftClick():
                mouse.click(x, y)
            case A.DoubleClick():
                mouse.dblclick(x, y)
            case A.TripleClick():
                mouse.click(x, y, click_count=3)
            case A.RightClick():
                mouse.click(x, y, button="right")
            case A.MiddleClick():
                mouse.click(x, y, button="middle")
            case A.MouseMove():
                mouse.move(x, y)
            case A.LeftClickDrag():
                mouse.down()
                mouse.move(x, y, steps=8)
                mouse.up()
            case A.Key():
                keyboard.press(playwright_chord(action.keys))
            case A.Scroll() | A.HScroll():
                if action.coordinate is not None:
                    mouse.move(*self._map(action.coordinate).css)
                if isinstance(action, A.Scroll):
                    mouse.wheel(0, -action.pixels)  # positive pixels scroll up
                else:
                    mouse.wheel(action.pixels, 0)
            case A.UploadFile():
                path = self.files.get(action.file)
                if path is None:
                    names = ", ".join(sorted(self.files)) or "none"
                    raise ActionError(f"no file named {action.file!r} in this task (declared files: {names})")
                self._chooser = None
                mouse.click(x, y)
                deadline = time.monotonic() + self.settings.action_timeout_ms / 1000
                while self._chooser is None and time.monotonic() < deadline:
                    self.page.wait_for_timeout(10)
                if self._chooser is None:
                    raise ActionError(
                        f"no file chooser opened at {audit.css if audit else (x, y)}: "
                        "click the file input (or its 'Choose file' button)"
                    )
                self._chooser.set_files(str(path))
                self._chooser = None
            case A.GotoUrl():
                url = self.resolve_url(action.url)
                self.check_url_allowed(url)
                self._goto_url(url)
            case _:
                super()._perform_input(action, audit)

    @property
    def _local_task(self) -> bool:
        """A task whose start page is a local file: its own ``file:`` pages are where its secrets belong."""
        return urlsplit(self._start_url or "").scheme.lower() == "file"

    def _mask_secrets(self) -> None:
        """Right before a capture: hide the task's secrets on screen (``_MASK_SECRETS``; the capture draws a fresh
        frame, with the change). Only on a page of the task's origins, where a secret may be shown: no other page
        is given the values."""
        values = sorted({v for v in self._secrets.values() if len(v) >= MIN_MASKED_SECRET})
        if not values or self.page is None or self._watch is None:
            return
        local = self._local_task
        bound = bool(self.allowed_origins) or local  # as for typing: a bare executor has no origins to bind them to
        if bound and frame_refusal(str(self.page.url), 0, self.allowed_origins, local_pages=local) is not None:
            return
        try:
            self._watch.evaluate(f"({_MASK_SECRETS})({json.dumps(values)})")
        except Exception:  # the document is going away: the capture fails, or sees the next one (masked next time)
            pass
        # Frames of the task's origins too (a login form in a same-origin frame, re-rendered with the values), each
        # asked only when every frame above it is the task's as well: no other origin is given the values.
        for frame in self.page.frames[1:]:
            if bound and not self._task_frame(frame, local):
                continue
            try:
                frame.evaluate(_MASK_SECRETS, values)
            except Exception:  # detached meanwhile
                pass

    def _task_frame(self, frame: Any, local: bool) -> bool:
        """Whether ``frame`` and every frame above it are of the task's origins (tools.secret_destination)."""
        chain = []
        while frame is not None:
            chain.append(frame)
            frame = frame.parent_frame
        depths = range(len(chain) - 1, -1, -1)  # the page itself is depth 0
        origins = self.allowed_origins
        return all(frame_refusal(f.url, d, origins, local_pages=local) is None for f, d in zip(chain, depths, strict=True))

    def _hide_secret_field(self) -> None:
        # Where the keys go (the focused field, through same-origin frames and open shadow roots) draws discs from
        # now on, as <input type=password> does, with its value unchanged. In the page itself DevTools also finds a
        # field inside closed shadow roots (a custom element's), which the page's own script cannot reach.
        try:
            chain, _ = key_frames(self.page)
            hidden = chain[-1].evaluate(_HIDE_FOCUSED_TEXT)
            if not hidden and len(chain) == 1 and self._watch is not None:
                self._watch.call_on_focused(_HIDE_THIS_FIELD)
        except Exception:  # the page went away meanwhile: nothing is typed there either
            pass

    def _goto_url(self, url: str) -> None:
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.page.goto(url, wait_until="load")
        except PlaywrightError as exc:
            if "ERR_ABORTED" not in str(exc):
                raise
            # A page with unsaved changes asks to confirm leaving (beforeunload): dismissed, the browser stays, and
            # Playwright says only net::ERR_ABORTED. The dialog's event comes just after: said in this step.
            self.page.wait_for_timeout(LEAVE_DIALOG_GRACE_MS)
            if not any(d.kind == "beforeunload" and d.answer == "dismissed" for d in self._dialogs):
                raise
            raise ActionError(
                f"the page asked to confirm leaving it (unsaved changes?) and the dialog was dismissed (browser.dialogs: "
                f"{self.settings.dialogs}), so it stayed on {self.page.url[:MAX_TAB_URL]}"
            ) from None

    def _check_secret_destination(self, names: list[str]) -> None:
        self._secret_frames(names)

    def _type_secret(self, name: str, value: str) -> None:
        # Inserted by a script in the document just checked, not sent as key events: between two keys the page's
        # scripts run, and a page of the task's origin that focused a frame of another origin on the first keydown
        # gave that frame the other 16 characters of a 17-character key. execCommand inserts only into this
        # document, as typing does (beforeinput and input events a character, the undo stack; no key events).
        chain = self._secret_frames([name])
        frame = self.page.main_frame if chain is None else chain[-1]  # None: a bare executor, no origins to check
        try:
            typed = frame.evaluate(_INSERT_TEXT, value)
        except Exception as exc:  # the frame went away meanwhile
            raise ActionError(f"could not type the secret {name}: {_first_line(exc)}") from None
        characters = len(list(value))  # code points, as the script counts them
        if typed != characters:
            raise ActionError(
                f"typed {typed} of the {characters} characters of the secret {name}: then no field of the page had "
                "the focus any more"
            )

    def _secret_frames(self, names: list[str]) -> list[Any] | None:
        """The frames from the page down to the one the keys would go to now, when secrets may go there
        (tools.secret_destination): a document of the task's origins; else :class:`ActionError`. None for an
        executor given no origins at all (a bare one, not a task's): it has nothing to bind them to."""
        local = self._local_task
        if not self.allowed_origins and not local:
            return None
        said = ", ".join(names)
        origins = self.allowed_origins

        def allowed(url: str, depth: int) -> bool:
            return frame_refusal(url, depth, origins, local_pages=local) is None

        try:
            chain, hidden = key_frames(self.page, allowed)
            problem = refusal([frame.url for frame in chain], origins, local_pages=local)
            if problem is None and hidden:
                children = [frame.url for frame in chain[-1].child_frames]
                problem = hidden_focus_refusal(children, len(chain), origins, local_pages=local)
        except Exception as exc:  # the page went away or navigated while asked: no telling where the keys go
            unknown = f"could not tell where the keys would go ({_first_line(exc)})"
            raise ActionError(f"refused to type the secret {said}: {unknown}") from None
        if problem is not None:
            raise ActionError(f"refused to type the secret {said}: {problem}; click a field of the task's site first")
        return chain

    def _type_chunk(self, chunk: str) -> None:
        """keyboard.type()'s key events, sent back to back on the capture's DevTools session (tools.keytext);
        characters without a key of their own (accents, Enter, Tab) go through keyboard.type() itself."""
        for kind, run in key_runs(chunk):
            if kind == "keys" and self._capture is not None:
                self._capture.send_all(key_events(run))
            else:
                self.page.keyboard.type(run)

    def _sleep(self, seconds: float) -> None:
        self.page.wait_for_timeout(seconds * 1000)

    # -- settle --------------------------------------------------------------------------------
    def _on_request(self, request: Any) -> None:
        if len(self._in_flight) >= MAX_TRACKED_REQUESTS:  # the oldest never ended: forget them
            for old in list(self._in_flight)[: MAX_TRACKED_REQUESTS // 2]:
                del self._in_flight[old]
        self._network_at = self._in_flight[request] = time.monotonic()
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self._navigations += 1

    def _on_request_done(self, request: Any) -> None:
        self._in_flight.pop(request, None)
        self._network_at = time.monotonic()

    def _on_new_tab(self, page: Any) -> None:
        self._opened.append(page)

    def _on_file_chooser(self, chooser: Any) -> None:
        self._chooser = chooser

    def _on_dialog(self, dialog: Any) -> None:
        accept = self.settings.dialogs == "accept"
        kind = dialog.type if dialog.type in ("alert", "confirm", "prompt", "beforeunload") else "alert"
        message = str(dialog.message)[:MAX_DIALOG_MESSAGE]
        try:
            if accept:
                dialog.accept(dialog.default_value) if kind == "prompt" else dialog.accept()
            else:
                dialog.dismiss()
        except Exception:  # the page closed it, or went away
            pass
        if len(self._dialogs) >= MAX_DIALOGS_KEPT:  # dialogs in a loop: thousands a second, each answered
            self._dialogs_more += 1
            return
        self._dialogs.append(DialogSeen(kind=kind, message=message, answer="accepted" if accept else "dismissed"))

    def _on_download(self, download: Any) -> None:
        # Its name only: the context refuses every download (accept_downloads=False), so a page's file never reaches
        # the disk (a page could stream gigabytes a second into a temporary folder) nor the run folder the viewer serves.
        self._download_events += 1
        self._downloads.append(str(download.suggested_filename)[:200])

    def _take_page_events(self) -> PageEvents:
        events = PageEvents(
            dialogs=self._dialogs,
            dialogs_more=self._dialogs_more,
            tab_change=self._tab_change,
            downloads=self._downloads,
            blocked_tabs=self._blocked,
            blocked_tabs_more=self._blocked_more,
        )
        self._dialogs, self._dialogs_more, self._tab_change = [], 0, None
        self._downloads, self._blocked, self._blocked_more = [], [], 0
        return events

    def _on_load(self, _page: Any) -> None:
        self._loads = self._navigations

    def _mark(self) -> tuple[int, int, int]:
        self._action_at = time.monotonic()
        self._settled_shot = None
        watch = self._watch
        self._downloads_at_mark = (watch.downloads if watch is not None else 0, self._download_events)
        return self._navigations, watch.stops if watch is not None else 0, watch.windows if watch is not None else 0

    def _perform(self, action: A.Action, audit: CoordinateAudit | None) -> None:
        # Ending or answering leaves the screen as it is: nothing to wait for, nothing for the next perceive to see.
        self._screen_untouched = isinstance(action, A.Terminate | A.Answer)
        self._load_stopped = None
        self._shoot_after_settle = not self._screen_untouched
        try:
            super()._perform(action, audit)
        except Exception:
            if not self.page.is_closed():
                raise
            # The action closed its own tab (a button calling window.close()): done; the settle moves to the tab left.

    def _navigated(self, mark: Any) -> bool:
        return mark is not None and self._navigations > mark[0]

    def _settle(self, mark: Any) -> None:
        """Wait until the action's effects are on screen: two animation frames, and a navigation the page asked
        for (a form's submit, a link) or began loaded or given up; then, where the task's settle policy asks,
        network idle and finished animations (at most its max_ms).

        The second frame is the one a screenshot taken here draws: that screenshot is the next perceive's
        (when it comes soon, see :meth:`perceive`), so the frame wait and the capture overlap.
        """
        if self._screen_untouched:
            self._screen_untouched = self._shoot_after_settle = False
            return
        started = time.monotonic()
        navigations_before, stops_before, windows_before = mark
        shoot = self._shoot_after_settle and self._capture is not None
        self._shoot_after_settle = False
        if self.page.is_closed():  # the tab closed itself: look at the one left, then settle there
            self._follow_tabs(started + self.settings.settle_timeout_ms / 1000)
        watch = self._watch
        assert watch is not None, "the browser is not started"
        # One frame, then a capture: Page.captureScreenshot asks the compositor for a fresh frame and runs the page's
        # animation-frame callbacks for it, so the pair shows what two frames would (tests/tools/test_act_speed.py).
        # When the wait returns, a navigation the action asked for is known (watch.pending).
        watch.frames(1 if shoot else 2)
        deadline = time.monotonic() + self.settings.settle_timeout_ms / 1000
        while watch.pending or (
            # begun (its request seen) and neither loaded nor stopped: a 204 answer or a download never loads
            self._navigations > navigations_before and self._loads < self._navigations and watch.stops == stops_before
        ):
            now = time.monotonic()
            if now > deadline:
                if not watch.pending:
                    break  # a slow page is not an error of the action; the next screenshot shows it
                # The next page has not even answered, and Chromium answers no script on the old one meanwhile (no
                # screenshot title, no secret masking): waited for as long as a start page is (a slow report), within
                # the run's budget, then stopped, as Esc does.
                unanswered = started + max(self.settings.settle_timeout_ms, START_PAGE_TIMEOUT_MS) / 1000
                if now > (unanswered if self._deadline is None else min(unanswered, self._deadline)):
                    self._stop_loading()
                    break
            self.page.wait_for_timeout(10)
        # A tab the action asked for (known with the frame wait, as a navigation is) arrives as its own event.
        while watch.windows > windows_before and not self._opened and time.monotonic() < deadline:
            self.page.wait_for_timeout(10)
        # So does a download. A navigation that ended without loading is a 204 answer or a download, and DevTools
        # may say which only just after: a moment's grace. Then Playwright's own event names the file.
        began, named = self._downloads_at_mark
        if self._navigations > navigations_before and self._loads < self._navigations and watch.downloads == began:
            grace = min(deadline, time.monotonic() + DOWNLOAD_GRACE_S)
            while watch.downloads == began and time.monotonic() < grace:
                self.page.wait_for_timeout(10)
        while watch.downloads - began > self._download_events - named and time.monotonic() < deadline:
            self.page.wait_for_timeout(10)
        policy = self.settle_policy
        if policy.enabled:
            until = started + policy.max_ms / 1000
            if self._deadline is not None:
                until = min(until, self._deadline)  # the run's budget holds inside the wait too
            if policy.network_idle:
                self._wait_network_idle(until)
            if policy.animations:
                self._wait_animations(until)
        self._follow_tabs(deadline)
        if shoot:
            self._shoot_settled()

    def _stop_loading(self) -> None:
        watch = self._watch
        if watch is None:
            return
        try:
            watch.session.send("Page.stopLoading", timeout=2000)  # answered by the browser, whatever the page does
        except Exception:  # the page went away meanwhile
            return
        self._load_stopped = self.page.url

    def _follow_tabs(self, deadline: float) -> None:
        """Act where a person would now look: in the tab the action opened (the page asked for one while
        handling input: Chromium's userGesture), or, when the current tab closed itself, in the newest one still
        open. The change is a navigation (the next perceive captures afresh) and is said in the action's outcome.
        A tab asked for after the settle (window.open after a fetch, still within the click's activation) is
        followed when it comes, at the next action's settle at the latest.

        Every other new tab was opened by a page by itself (a timer, a script, a page in the background): a
        browser's popup blocker refuses those, and headless Chromium has none. They are closed unseen and listed
        in the step, so a page cannot steer the agent into a tab of its choosing, nor pile up tabs."""
        opened = [p for p in self._opened if not p.is_closed()]
        self._opened.clear()
        watch = self._watch
        wanted = watch.window_url if watch is not None else ""  # the URL the action's tab asked for
        asked = watch is not None and watch.windows > self._windows_matched
        chosen = None
        if opened and asked:  # a click opens one tab at most (it is the gesture's); the one at the URL it asked for
            chosen = next((p for p in reversed(opened) if wanted and p.url == wanted), opened[-1])
        if watch is not None and (chosen is not None or self._window_waited):
            self._windows_matched = watch.windows  # matched, or no tab came in a whole step: given up on
        self._window_waited = asked and chosen is None
        for page in opened:
            if page is not chosen:
                self._block(page)
        if chosen is not None:
            page, said = chosen, "opened a new tab"
        elif self.page.is_closed():
            still = [p for p in self._context.pages if not p.is_closed()]
            if not still:
                return  # nothing left to act on: the next perceive says so
            page, said = still[-1], TAB_CLOSED + "; back to the previous tab"
        else:
            return
        try:
            if page.url == "about:blank" and wanted not in ("", "about:blank"):  # window.open(url) starts blank, then loads url
                page.wait_for_url(lambda url: url != "about:blank", timeout=max(1.0, (deadline - time.monotonic()) * 1000))
            page.wait_for_load_state("load", timeout=max(1.0, (deadline - time.monotonic()) * 1000))
        except Exception:  # a slow (or blank) tab is not the action's error; the next screenshot shows it
            pass
        try:
            page.bring_to_front()
        except Exception:
            pass
        self._attach(page)
        self._navigations += 1
        self._loads = self._navigations
        self._tab_change = f"{said}: {page.url[:MAX_TAB_URL]}"  # a page chooses its URL: bounded as the record is

    def _block(self, page: Any) -> None:
        if len(self._blocked) < MAX_BLOCKED_SAID:
            self._blocked.append(str(page.url)[:MAX_TAB_URL])
        else:
            self._blocked_more += 1
        try:
            # Asked, not waited for (a bomb's 40 tabs: 70 ms, against 470 waiting for each). A beforeunload handler
            # cannot hold it open: Chromium shows that dialog only to a page a person interacted with, and no
            # input ever went to this one.
            page.close(run_before_unload=True)
        except Exception:  # it closed itself meanwhile
            pass

    def _shoot_settled(self) -> None:
        """Capture the settled screen for the next perceive; if the capture fails, or a navigation is still
        loading, the next perceive captures afresh (and raises the page's real error, if any)."""
        if self._capture is None or self._loads < self._navigations:
            return
        self._mask_secrets()
        try:
            png, title = self._capture.png_and_title()
        except Exception:
            return
        self._settled_shot = _SettledShot(png, title, self._navigations, time.monotonic(), datetime.now(timezone.utc))

    def _wait_network_idle(self, until: float) -> None:
        """Until no request the action started is in flight and none started or ended for NETWORK_QUIET_S, or
        ``until``. Requests from before the action (a long poll, a stream) are not the action's to wait for."""
        while time.monotonic() < until:
            quiet = time.monotonic() - self._network_at
            busy = any(started >= self._action_at for started in self._in_flight.values())
            if not busy and quiet >= NETWORK_QUIET_S:
                return
            self.page.wait_for_timeout(10)  # lets Playwright deliver the request events

    def _wait_animations(self, until: float) -> None:
        left_ms = int((until - time.monotonic()) * 1000)
        if left_ms <= 0 or self._watch is None:
            return
        try:  # in the isolated world: a page cannot stretch the wait (nor cut it) by replacing getAnimations
            self._watch.evaluate(f"({_ANIMATIONS_DONE})({left_ms})", await_promise=True, timeout_ms=left_ms + 1000)
        except Exception:
            pass  # the document went away mid-wait: a navigation, which the next screenshot shows


MAX_FRAMES_SEARCHED = 21  # the page and 20 frames: an ad-laden page's hundred frames are not all searched


def _frame_offset(frame: Any) -> tuple[float, float] | None:
    """Where ``frame``'s viewport starts on the page's (CSS pixels): its element's box, inside its border and
    padding; frames within frames add up, as Playwright's boxes are the page's. None when it is not shown."""
    element = frame.frame_element()
    box = element.bounding_box()
    if box is None:
        return None
    inset = element.evaluate(
        "el => { const s = getComputedStyle(el); return [el.clientLeft + parseFloat(s.paddingLeft || 0),"
        " el.clientTop + parseFloat(s.paddingTop || 0)]; }"
    )
    return box["x"] + float(inset[0]), box["y"] + float(inset[1])


def _shifted(found: Located, offset: tuple[float, float]) -> Located:
    """A match inside a frame, moved to where it shows on the page."""
    dx, dy = offset
    point = (found.point[0] + dx, found.point[1] + dy) if found.point is not None else None
    scroll = found.scroll.model_copy(update={"at": (found.scroll.at[0] + dx, found.scroll.at[1] + dy)}) if found.scroll else None
    return found.model_copy(update={"x": found.x + dx, "y": found.y + dy, "point": point, "scroll": scroll})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _exception_text(details: dict[str, Any]) -> str:
    """The thrown error's first line, from DevTools' exceptionDetails."""
    exception = details.get("exception") or {}
    text = exception.get("description") or details.get("text") or "an exception"
    text = str(text).splitlines()[0]
    return text.removeprefix("Uncaught (in promise) ").removeprefix("Uncaught ")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}".lower()
