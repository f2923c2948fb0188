"""Alerts by webhook: a small JSON event POSTed on promotion, rollback, degeneration, failure.

Nothing in the loop knows about HTTP. An :class:`AlertWatcher` tails the ledger: the
``events`` table (what the registry and the loop record as they go) and, for the plasticity
system, which records no events, its finished experiments. Each new row that an alert kind
covers becomes one :class:`Alert`, POSTed with the standard library's ``urllib`` and a timeout;
a failed POST is logged and retried a bounded number of times, then dropped with a warning,
and never raised into the run. Off unless a URL is given (``selfimprove run --alert-url`` or
``selfimprove serve --alert-url``).

Which ledger rows make which alert:

============  =============================================================================
kind          rows
============  =============================================================================
promotion     the judge's ``promote`` event of an experiment (its payload names the
              experiment; the registry's own ``promote`` event of the same promotion, without
              one, is not sent again), and a plasticity cycle that was kept
rollback      a ``rollback`` event (a model's incumbent restored) or
              ``code_improvement_rolled_back`` (an applied code change undone)
degeneration  a plasticity cycle undone because its generations degenerated (the rule's
              reason says ``degeneration X > limit``)
failure       an ``experiment_failed`` event (a strategy raised, diverged or ran out of time)
              or a ``checkpoint_error`` event (a checkpoint failed its check)
============  =============================================================================

The watcher starts after the newest rows present when it starts (history is not re-sent),
tails by row id, and keeps its place in memory: run one watcher per ledger (one ``serve`` beside
many ``run`` processes, say), or each process that watches sends every alert.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from selfimprove.errors import ConfigError

if TYPE_CHECKING:
    from selfimprove.store import EventRecord, ExperimentRecord, Store

__all__ = [
    "ALERT_KINDS",
    "Alert",
    "AlertConfig",
    "AlertWatcher",
    "alert_config",
    "alerts_from_events",
    "alerts_from_experiments",
    "post_alert",
    "watching",
]

logger = logging.getLogger(__name__)

#: The kinds of alert, in the order the docs list them.
ALERT_KINDS = ("promotion", "rollback", "degeneration", "failure")
#: Longest webhook URL accepted.
MAX_URL_LENGTH = 2048
#: Most seconds one POST may wait, and most retries of one alert.
MAX_TIMEOUT_S = 60.0
MAX_RETRIES = 5
#: Rows read per poll of each table: a watcher that fell behind catches up in steps.
POLL_ROWS = 500
#: The strategy name under which the plasticity system records its cycles.
PLASTICITY_STRATEGY = "plasticity"
_DEGENERATED = re.compile(r"degeneration (\S+) > (\S+)")
_EVENT_KINDS = {
    "promote": "promotion",
    "rollback": "rollback",
    "code_improvement_rolled_back": "rollback",
    "experiment_failed": "failure",
    "checkpoint_error": "failure",
}


@dataclass(frozen=True)
class AlertConfig:
    """Where and how alerts are sent; checked when made.

    Attributes:
        url: The webhook: an ``http://`` or ``https://`` URL with a host.
        kinds: The alert kinds sent (default: all of :data:`ALERT_KINDS`).
        timeout_s: Seconds one POST may take, in (0, 60].
        retries: Further tries of a failed POST, 0 to 5 (waits 0.5 s, 1 s, 2 s, ... between).
        poll_s: Seconds between two reads of the ledger, in [0.05, 3600].

    Raises:
        ConfigError: A bad value, named in the message.
    """

    url: str
    kinds: tuple[str, ...] = ALERT_KINDS
    timeout_s: float = 5.0
    retries: int = 2
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        check_webhook_url(self.url)
        kinds = tuple(dict.fromkeys(k.strip().lower() for k in self.kinds))
        unknown = [k for k in kinds if k not in ALERT_KINDS]
        if unknown or not kinds:
            raise ConfigError(
                f"alert kinds must be some of {', '.join(ALERT_KINDS)}; got {list(self.kinds)!r}."
            )
        object.__setattr__(self, "kinds", kinds)
        if not (math.isfinite(self.timeout_s) and 0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise ConfigError(
                f"alert timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds, got {self.timeout_s!r}."
            )
        if isinstance(self.retries, bool) or not 0 <= self.retries <= MAX_RETRIES:
            raise ConfigError(f"alert retries must be 0 to {MAX_RETRIES}, got {self.retries!r}.")
        if not (math.isfinite(self.poll_s) and 0.05 <= self.poll_s <= 3600):
            raise ConfigError(
                f"alert poll interval must be in [0.05, 3600] s, got {self.poll_s!r}."
            )

    @property
    def endpoint(self) -> str:
        """The URL's scheme, host and port only: what logs show (a webhook's path or query
        often holds its secret token)."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def check_webhook_url(url: str) -> None:
    """Refuse anything but an ``http(s)://host[:port][/path]`` URL, in one line.

    Raises:
        ConfigError: Not such a URL (the bad value is in the message, shortened).
    """
    shown = url if len(url) <= 80 else url[:77] + "..."
    why = None
    if not isinstance(url, str) or not url:
        why = "it is empty"
    elif len(url) > MAX_URL_LENGTH:
        why = f"it is longer than {MAX_URL_LENGTH} characters"
    elif any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        why = "it holds spaces or control characters"
    else:
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            why = str(exc)
        else:
            if parts.scheme not in ("http", "https"):
                why = "it must start with http:// or https://"
            elif not parts.hostname:
                why = "it has no host"
    if why is not None:
        raise ConfigError(
            f"bad alert webhook URL {shown!r}: {why}; give one like "
            "https://hooks.example.com/selfimprove."
        )


@dataclass(frozen=True)
class Alert:
    """One alert, as POSTed (see :meth:`to_json`).

    Attributes:
        kind: One of :data:`ALERT_KINDS`.
        model: The model's name (``None``: not about one model, e.g. a code change).
        message: One readable line.
        time: When the ledger recorded it (UTC).
        figures: A few numbers and names (version, strategy, before/after, p-value, ...).
        source: The ledger row it comes from, e.g. ``event:12`` or ``experiment:7``: a
            receiver can drop a repeat by it.
    """

    kind: str
    model: str | None
    message: str
    time: datetime | None
    figures: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON body: ``kind``, ``model``, ``message``, ``time`` (ISO 8601, UTC),
        ``figures`` and ``source``."""
        when = self.time.isoformat(timespec="seconds") + "Z" if self.time else None
        return {
            "kind": self.kind,
            "model": self.model,
            "message": self.message,
            "time": when,
            "figures": _finite(self.figures),
            "source": self.source,
        }


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _figures(stats: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: stats[k] for k in keys if stats.get(k) is not None}


def alerts_from_events(
    events: Iterable[EventRecord],
    names: dict[int, str],
    experiments: dict[int, ExperimentRecord],
) -> list[Alert]:
    """The alerts of some ledger events (a pure function; see the module docstring).

    Args:
        events: New events, oldest first.
        names: Model names by id.
        experiments: The experiments the events name (by id), for their figures.
    """
    out = []
    for e in events:
        kind = _EVENT_KINDS.get(e.kind)
        if kind is None:
            continue
        exp_id = e.payload.get("experiment")
        exp = experiments.get(exp_id) if isinstance(exp_id, int) else None
        if e.kind == "promote" and exp_id is None:
            continue  # the registry's record of the promotion the judge's event reports
        figures: dict[str, Any] = {}
        if exp is not None:
            figures = {"experiment": exp.id, "strategy": exp.strategy, "cycle": exp.cycle}
            figures |= _figures(
                exp.statistics,
                ("objective", "before", "after", "relative_improvement", "p_value"),
            )
        figures |= {k: v for k, v in e.payload.items() if k in ("version", "from", "to")}
        if "improvement_id" in e.payload:
            figures["code_improvement"] = e.payload["improvement_id"]
        model = names.get(e.model_id) if e.model_id is not None else None
        out.append(Alert(kind, model, e.message, e.created_at, figures, f"event:{e.id}"))
    return out


def alerts_from_experiments(
    experiments: Iterable[ExperimentRecord], names: dict[int, str]
) -> list[Alert]:
    """The alerts of finished plasticity cycles (a pure function): a kept cycle is a
    promotion; one undone because its generations degenerated is a degeneration."""
    out = []
    for x in experiments:
        if x.strategy != PLASTICITY_STRATEGY or x.decision is None:
            continue
        model = names.get(x.model_id) if x.model_id is not None else None
        figures: dict[str, Any] = {"experiment": x.id, "cycle": x.cycle}
        figures |= _figures(
            x.statistics, ("metric", "before", "after", "degeneration", "heads_after")
        )
        if x.decision.value == "promote":
            kind = "promotion"
        else:
            m = _DEGENERATED.search(x.reason)
            if m is None:
                continue
            kind = "degeneration"
            figures["degeneration_limit"] = _number(m.group(2))
        out.append(Alert(kind, model, x.reason, x.finished_at, figures, f"experiment:{x.id}"))
    return out


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def post_alert(alert: Alert, config: AlertConfig) -> bool:
    """POST one alert; retried ``config.retries`` times after a failure (a refused connection,
    a timeout, a 5xx, 408 or 429), never raised.

    Returns:
        Whether the webhook took it (a 2xx answer).
    """
    body = json.dumps(alert.to_json(), ensure_ascii=False).encode()
    request = urllib.request.Request(
        config.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "selfimprove-alerts"},
    )
    for attempt in range(config.retries + 1):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=config.timeout_s) as reply:
                reply.read(4096)
            return True
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
            retry = exc.code >= 500 or exc.code in (408, 429)
        except (urllib.error.URLError, OSError) as exc:
            why = str(getattr(exc, "reason", exc))
            retry = True
        logger.info(
            "alert %s (%s) to %s failed (try %d of %d): %s",
            alert.kind,
            alert.source,
            config.endpoint,
            attempt + 1,
            config.retries + 1,
            why,
        )
        if not retry:
            break
    logger.warning(
        "alert %s (%s) dropped after %d tries: %s answered %s",
        alert.kind,
        alert.source,
        attempt + 1,
        config.endpoint,
        why,
    )
    return False


class AlertWatcher:
    """Tails a ledger and POSTs an alert for each new row an alert kind covers.

    Use :meth:`poll` to check once, or :meth:`start` / :meth:`stop` (or ``with``) for a daemon
    thread that polls every ``config.poll_s`` seconds; :meth:`stop` polls a last time, so
    what happened before it is sent.

    Args:
        store: The ledger (not closed here).
        config: Where and what to send.
    """

    def __init__(self, store: Store, config: AlertConfig) -> None:
        self.store = store
        self.config = config
        self.sent: list[Alert] = []
        self.failed: list[Alert] = []
        newest_event = store.list_events(limit=1)
        newest_exp = store.list_experiments(limit=1, newest_first=True)
        self._event_mark = newest_event[0].id if newest_event else 0
        self._experiment_mark = newest_exp[0].id if newest_exp else 0
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> list[Alert]:
        """Read what is new, send its alerts (of the configured kinds); returns them."""
        with self._lock:
            alerts = [a for a in self._new_alerts() if a.kind in self.config.kinds]
            for alert in alerts:
                (self.sent if post_alert(alert, self.config) else self.failed).append(alert)
            return alerts

    def _new_alerts(self) -> list[Alert]:
        events = self._events_after(self._event_mark)
        exp_ids = {
            e.payload["experiment"]
            for e in events
            if e.kind in _EVENT_KINDS and isinstance(e.payload.get("experiment"), int)
        }
        experiments = {i: self.store.get_experiment(i) for i in sorted(exp_ids)}
        outline = self.store.experiment_outline(self._experiment_mark)[:POLL_ROWS]
        cycles = []
        for exp_id, _, _, strategy, status, _ in outline:
            if strategy == PLASTICITY_STRATEGY:
                if status not in ("completed", "failed", "stale"):
                    break  # not finished yet: read again next time
                cycles.append(self.store.get_experiment(exp_id))
            self._experiment_mark = exp_id
        if events:
            self._event_mark = events[-1].id
        names = self._model_names([e.model_id for e in events] + [x.model_id for x in cycles])
        found = alerts_from_events(events, names, experiments)
        found += alerts_from_experiments(cycles, names)
        return found

    def _events_after(self, mark: int) -> list[EventRecord]:
        """The events above id ``mark``, oldest first: the newest rows are read back until
        ``mark`` is reached (twice as many at each step), so a poll reads what is new and
        little more, however long the table."""
        limit = POLL_ROWS
        while True:
            newest = self.store.list_events(limit=limit)
            if len(newest) < limit or newest[-1].id <= mark + 1:
                return [e for e in reversed(newest) if e.id > mark]
            limit *= 2

    def _model_names(self, ids: Iterable[int | None]) -> dict[int, str]:
        missing = {i for i in ids if i is not None and i not in self._names}
        if missing:
            self._names.update({m.id: m.name for m in self.store.list_models(missing)})
        return self._names

    # ------------------------------------------------------------------ the thread
    def start(self) -> AlertWatcher:
        """Poll in a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._loop, name="selfimprove-alerts", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, then poll once more (what happened up to now is sent)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join()
        self._safe_poll()

    def _loop(self) -> None:
        while not self._stopping.wait(self.config.poll_s):
            self._safe_poll()

    def _safe_poll(self) -> None:
        try:
            self.poll()
        except Exception:  # a ledger read failing now must not end the watcher or the run
            logger.warning("alerts: reading the ledger failed; trying again", exc_info=True)

    def __enter__(self) -> AlertWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def alert_config(url: str | None, kinds: Iterable[str] | None = None) -> AlertConfig | None:
    """The alert settings of the command line's ``--alert-url`` / ``--alert-on`` (``None``:
    alerts off).

    Raises:
        ConfigError: A bad URL or kind, or kinds without a URL.
    """
    kinds = tuple(kinds or ())
    if url is None:
        if kinds:
            raise ConfigError("--alert-on needs --alert-url (the webhook to POST alerts to).")
        return None
    return AlertConfig(url, kinds=kinds or ALERT_KINDS)


@contextmanager
def watching(store: Store, config: AlertConfig | None) -> Iterator[AlertWatcher | None]:
    """Send alerts of ``store`` while the block runs (nothing when ``config`` is ``None``);
    what happened inside the block is sent before it ends."""
    if config is None:
        yield None
        return
    watcher = AlertWatcher(store, config)
    logger.info("sending %s alerts to %s", ", ".join(config.kinds), config.endpoint)
    with watcher:
        yield watcher
