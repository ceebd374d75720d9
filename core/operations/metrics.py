"""Metrics in the Prometheus text format (``GET /metrics``) and the one-line-per-message log.

A small registry of our own (counters and fixed-bucket histograms; no dependency): a message
costs a few dictionary updates. Counters that other parts already keep (the delivery
coordinator's try statistics, cache hits, plugin failures) are read when ``/metrics`` is scraped
rather than counted twice. Dependencies point one way: the webhook and delivery record into
``Metrics``; ``Metrics`` reads the running bots through the ``BotHolder`` and the try
statistics it was handed, and knows neither the webhook nor the delivery.

Each worker process has its own registry: with ``--workers N`` a scrape reaches one worker, so
scrape each worker (or sum over the ``instance`` label your scraper adds).
"""
from __future__ import annotations

from bisect import bisect_left
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from aiohttp import web

from ..appkeys import METRICS_KEY
from .console_traffic import TrafficRing, Transcripts, observe_message
from .logs import hash_user

if TYPE_CHECKING:
    from ..access.replies import Answer
    from ..appkeys import BotHolder

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds; a stage of the pipeline or one HTTP try.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                 4.5, 5.0, 10.0, 30.0)

Labels = tuple[str, ...]
_LE_INF = 'le="+Inf"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Counter:
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self.values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def absorb(self, other: "Counter") -> None:
        """Add another family's counts (a bot replaced by a settings reload) to these."""
        for labels, value in other.values.items():
            self.inc(*labels, amount=value)

    def copy(self) -> "Counter":
        twin = Counter(self.name, self.help, self.label_names)
        twin.absorb(self)
        return twin

    def samples(self) -> Iterable[str]:
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class Histogram:
    """Observations counted into fixed buckets (cumulative on output), with sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = STAGE_BUCKETS) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self.data: dict[Labels, list[Any]] = {}  # labels -> [per-bucket counts, sum, count]

    def observe(self, value: float, *labels: str) -> None:
        entry = self.data.get(labels)
        if entry is None:
            entry = self.data[labels] = [[0] * len(self.buckets), 0.0, 0]
        i = bisect_left(self.buckets, value)  # the first bucket whose bound is >= value
        if i < len(self.buckets) and value == value:  # (NaN falls in no bucket)
            entry[0][i] += 1
        entry[1] += value
        entry[2] += 1

    def count(self, *labels: str) -> int:
        entry = self.data.get(labels)
        return entry[2] if entry else 0

    def absorb(self, other: "Histogram") -> None:
        """Add another family's observations (same buckets) to these."""
        if other.buckets != self.buckets:
            return
        for labels, (counts, total, count) in other.data.items():
            entry = self.data.get(labels)
            if entry is None:
                entry = self.data[labels] = [[0] * len(self.buckets), 0.0, 0]
            entry[0] = [a + b for a, b in zip(entry[0], counts)]
            entry[1] += total
            entry[2] += count

    def copy(self) -> "Histogram":
        twin = Histogram(self.name, self.help, self.label_names, self.buckets)
        twin.absorb(self)
        return twin

    def samples(self) -> Iterable[str]:
        for labels, (counts, total, count) in sorted(self.data.items()):
            running = 0
            for bound, n in zip(self.buckets, counts):
                running += n
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, labels, le)} {running}"
            yield f"{self.name}_bucket{_labels(self.label_names, labels, _LE_INF)} {count}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_number(total)}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {count}"


class Collected:
    """Samples read from elsewhere at scrape time: ``read()`` -> [(label values, value)]."""

    def __init__(self, name: str, help: str, kind: str, labels: Sequence[str],
                 read: Callable[[], Iterable[tuple[Labels, float]]]) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self.label_names = tuple(labels)
        self.read = read

    def samples(self) -> Iterable[str]:
        for labels, value in sorted(self.read()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Any] = []

    def add(self, metric: Any) -> Any:
        self.metrics.append(metric)
        return metric

    def render(self, more: Iterable[Any] = ()) -> str:
        lines: list[str] = []
        for metric in [*self.metrics, *more]:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


# ---- what Skillbot measures ------------------------------------------------------------------------

#: WeChat's message types and event names, as documented (官方文档: 接收普通消息, 接收事件推送,
#: 自定义菜单事件, 卡券事件, 客服事件, 门店/审核事件...). A label is one of these or ``other``: the
#: values come from whoever signs a request, and every distinct label is a series kept forever.
KNOWN_MESSAGE_TYPES = ("text", "image", "voice", "video", "shortvideo", "location", "link", "file",
                       "miniprogrampage", "device_text", "device_event")
KNOWN_EVENTS = (
    "subscribe", "unsubscribe", "SCAN", "LOCATION", "CLICK", "VIEW", "view_miniprogram",
    "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin",
    "location_select", "TEMPLATESENDJOBFINISH", "MASSSENDJOBFINISH", "PUBLISHJOBFINISH",
    "subscribe_msg_popup_event", "subscribe_msg_change_event", "subscribe_msg_sent_event",
    "kf_create_session", "kf_close_session", "kf_switch_session",
    "card_pass_check", "card_not_pass_check", "user_get_card", "user_gifting_card", "user_del_card",
    "user_consume_card", "user_pay_from_pay_cell", "user_view_card", "user_enter_session_from_card",
    "update_member_card", "card_sku_remind", "card_pay_order", "submit_membercard_user_info",
    "poi_check_notify", "WifiConnected", "ShakearoundUserShake", "user_scan_product",
    "user_scan_product_enter_session", "user_scan_product_async", "user_scan_product_verify_action",
    "qualification_verify_success", "qualification_verify_fail", "naming_verify_success",
    "naming_verify_fail", "annual_renew", "verify_expired", "user_authorize_invoice",
    "submit_invoice_title", "update_invoice_status",
    "merchant_order", "giftcard_pay_done", "giftcard_send_to_friend", "giftcard_user_accept",
    "weapp_audit_success", "weapp_audit_fail", "weapp_audit_delay")
_KNOWN_KINDS = {kind.lower(): kind for kind in
                KNOWN_MESSAGE_TYPES + tuple(f"event.{event}" for event in KNOWN_EVENTS)}
OTHER = "other"


def kind_label(kind: str) -> str:
    """The metric label of a message kind (``text``, ``event.CLICK``...): a known kind in its
    documented spelling, else ``other``."""
    return _KNOWN_KINDS.get(kind.lower(), OTHER)


def outcome_of(plugin: str | None, intent: str | None) -> str:
    """How a message ended (by who answered it), for the message log line and metrics."""
    if plugin == "core" and intent in ("error", "rate_limited", "continue", "none"):
        return {"none": "no_answer"}.get(intent, intent)
    if intent == "filtered":
        return "filtered"
    return "answered"


class Metrics:
    """The bot's metrics. One per application, so counts survive a settings reload.

    ``bots`` gives the running bot and those a reload is retiring (caches, plugin failures,
    state backend); ``read_tries_from`` hands over the delivery coordinator's try statistics.
    """

    def __init__(self, bots: BotHolder | None = None) -> None:
        self.registry = r = Registry()
        self.bots = bots
        self.try_stats: Mapping[str, int] = {}
        self.started = time.time()
        #: The operator console's per-minute traffic and opt-in transcripts (console_traffic.py).
        self.traffic = TrafficRing()
        self.transcripts = Transcripts()
        self.messages = r.add(Counter(
            "skillbot_messages_total", "Messages answered (once per message, retries not counted), "
            "by WeChat type, intent and plugin.", ("type", "intent", "plugin")))
        self.outcomes = r.add(Counter(
            "skillbot_message_outcomes_total", "Messages by outcome: answered, no_answer, filtered, "
            "rate_limited, continue, error.", ("outcome",)))
        self.stages = r.add(Histogram(
            "skillbot_stage_seconds", "Time per stage: verify, parse (per try); inbound, route, skill, "
            "fallback, outbound, pipeline (per message); render, request (per answered try).",
            ("stage",), STAGE_BUCKETS))
        self.provider_failures = r.add(Counter(
            "skillbot_provider_failures_total", "Messages during which a plugin's upstream service "
            "failed (the plugin answered from stale data or apologised), by plugin and provider; "
            "plugins report them in ctx.extra[\"provider_failures\"].", ("plugin", "provider")))
        self.reloads = r.add(Counter(
            "skillbot_settings_reloads_total", "Settings reloads, by result (applied, rejected).",
            ("result",)))
        #: Counts kept from bots a settings reload replaced.
        self.retired_caches: dict[tuple[str, str], float] = {}
        self.retired_failures: dict[str, float] = {}
        self.retired_families: dict[str, Any] = {}
        self.requests = r.add(Counter(
            "skillbot_requests_total", "HTTP tries received on the webhook that passed the checks, "
            "by message type (WeChat retries included).", ("type",)))
        self.rejected = r.add(Counter(
            "skillbot_rejected_total", "Webhook requests rejected, by HTTP status.", ("status",)))
        r.add(Collected("skillbot_tries_total", "WeChat tries by what the gateway did: first_try and "
                        "retry (answered), held (left unanswered for the next try), acked, "
                        "duplicates_suppressed, deferred.", "counter", ("result",), self._tries))
        r.add(Collected("skillbot_retries_deduplicated_total", "WeChat retries of a message already "
                        "answered, acknowledged without a second answer.", "counter", (),
                        lambda: self._stat("duplicates_suppressed")))
        r.add(Collected("skillbot_answers_missed_window_total", "Answers not ready by WeChat's last "
                        "try: delivered later (customer-service push or with the next message).",
                        "counter", (), lambda: self._stat("deferred")))
        r.add(Collected("skillbot_rate_limited_total", "Messages refused by the per-user rate limit.",
                        "counter", (), lambda: [((), self.outcomes.value("rate_limited"))]))
        r.add(Collected("skillbot_cache_hits_total", "Named cache hits.", "counter", ("cache",),
                        lambda: self._caches("hits")))
        r.add(Collected("skillbot_cache_misses_total", "Named cache misses.", "counter", ("cache",),
                        lambda: self._caches("misses")))
        r.add(Collected("skillbot_plugin_failures_total", "Hook calls that raised or exceeded their "
                        "time budget, by plugin.", "counter", ("plugin",), self._failures))
        r.add(Collected("skillbot_state_up", "1 when the state backend answers (always 1 for "
                        "memory), 0 while Redis is unreachable.", "gauge", ("backend",), self._state))
        r.add(Collected("skillbot_start_time_seconds", "Unix time this process started serving.",
                        "gauge", (), lambda: [((), self.started)]))

    def read_tries_from(self, stats: Mapping[str, int]) -> None:
        """Report these try statistics (the delivery coordinator's, kept up to date by it)."""
        self.try_stats = stats

    # ---- recording (called by the webhook and the delivery) -----------------------------------

    def message_done(self, ctx: Any, answer: Answer) -> str:
        """Count one finished message; returns its outcome."""
        message = ctx.message
        plugin = answer.plugin or "-"
        intent = answer.intent or "-"
        self.messages.inc(kind_label(message.kind), intent, plugin)
        outcome = outcome_of(answer.plugin, answer.intent)
        self.outcomes.inc(outcome)
        for stage, ms in ctx.timings.items():
            self.stages.observe(ms / 1000, stage)
        self.stages.observe(ctx.elapsed_ms / 1000, "pipeline")
        for failure in ctx.extra.get("provider_failures") or []:
            if isinstance(failure, dict):
                self.provider_failures.inc(str(failure.get("plugin") or "-"),
                                           str(failure.get("provider") or "-"))
        observe_message(self, ctx, answer, outcome)
        return outcome

    def observe_try(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.observe(ms / 1000, "request" if stage == "total" else stage)

    def retire(self, bot: Any) -> None:
        """Keep the counts of a bot replaced by a settings reload (its caches go with it)."""
        for name, cache in bot.caches().items():
            for kind in ("hits", "misses"):
                key = (name, kind)
                self.retired_caches[key] = self.retired_caches.get(key, 0) + getattr(cache, kind, 0)
        for plugin, n in bot.hooks.failures.items():
            self.retired_failures[plugin] = self.retired_failures.get(plugin, 0) + n
        # A plugin object given in code is registered again by the new bot: its families live on.
        live = {id(family) for other in self._live_bots() if other is not bot
                for family in getattr(other, "metric_families", [])}
        for family in getattr(bot, "metric_families", []):
            if id(family) in live:
                continue
            kept = self.retired_families.get(family.name)
            if kept is None and hasattr(family, "copy"):
                self.retired_families[family.name] = family.copy()
            elif kept is not None and type(kept) is type(family):
                kept.absorb(family)

    # ---- read at scrape time ------------------------------------------------------------------

    def _tries(self) -> list[tuple[Labels, float]]:
        return [((k,), v) for k, v in list(self.try_stats.items())]

    def _stat(self, name: str) -> list[tuple[Labels, float]]:
        return [((), self.try_stats.get(name, 0))]

    def _live_bots(self) -> list[Any]:
        return self.bots.live() if self.bots is not None else []

    def _caches(self, kind: str) -> list[tuple[Labels, float]]:
        totals = {name: v for (name, k), v in self.retired_caches.items() if k == kind}
        for bot in self._live_bots():
            for name, cache in bot.caches().items():
                value = getattr(cache, kind, None)
                if isinstance(value, (int, float)):
                    totals[name] = totals.get(name, 0) + value
        return [((name,), v) for name, v in totals.items()]

    def _failures(self) -> list[tuple[Labels, float]]:
        totals = dict(self.retired_failures)
        for bot in self._live_bots():
            for plugin, n in bot.hooks.failures.items():
                totals[plugin] = totals.get(plugin, 0) + n
        return [((plugin,), v) for plugin, v in totals.items()]

    def _state(self) -> list[tuple[Labels, float]]:
        if self.bots is None:
            return []
        state = self.bots.bot.state
        return [((state.backend,), 0 if state.status == "down" else 1)]

    def _plugin_families(self) -> list[Any]:
        """The plugins' families (``skillbot_metrics``): one per name, the counts of retired and
        retiring bots added to the running bot's. A name the core uses is left out."""
        taken = {metric.name for metric in self.registry.metrics}
        merged: dict[str, Any] = {name: family.copy() for name, family in self.retired_families.items()}
        seen: set[int] = set()
        for bot in self._live_bots():
            for family in getattr(bot, "metric_families", []):
                if family.name in taken or id(family) in seen:
                    continue
                seen.add(id(family))
                kept = merged.get(family.name)
                if kept is None:
                    merged[family.name] = family.copy() if hasattr(family, "copy") else family
                elif type(kept) is type(family) and hasattr(kept, "absorb"):
                    kept.absorb(family)
        return list(merged.values())

    def render(self) -> str:
        return self.registry.render(self._plugin_families())


def with_label(sample: str, name: str, value: str) -> str:
    """A sample line with one more label first (``m{a="1"} 2`` -> ``m{account="x",a="1"} 2``)."""
    label = f'{name}="{_escape(value)}"'
    cut = min(i for i in (sample.find("{"), sample.find(" "), len(sample)) if i >= 0)
    if sample[cut:cut + 1] == "{":
        return f"{sample[:cut + 1]}{label},{sample[cut + 1:]}"
    return f"{sample[:cut]}{{{label}}}{sample[cut:]}"


def render_accounts(accounts: Sequence[tuple[str, Metrics]]) -> str:
    """Several accounts' metrics as one exposition: each family once, every sample labelled
    with its ``account``."""
    families: dict[str, tuple[Any, list[str]]] = {}
    for account, metrics in accounts:
        for family in [*metrics.registry.metrics, *metrics._plugin_families()]:
            kept = families.setdefault(family.name, (family, []))
            kept[1].extend(with_label(line, "account", account) for line in family.samples())
    lines: list[str] = []
    for name, (family, samples) in families.items():
        lines.append(f"# HELP {name} {family.help}")
        lines.append(f"# TYPE {name} {family.kind}")
        lines.extend(samples)
    return "\n".join(lines) + "\n"


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format; needs ``server.admin_token`` when one is set.
    With several accounts every sample carries an ``account`` label (``default`` for the
    top-level one)."""
    from ..appkeys import ACCOUNTS_KEY
    from .health import authorized

    if not authorized(request):
        return web.Response(status=401, text="unauthorized", headers={"WWW-Authenticate": "Bearer"})
    accounts = request.app.get(ACCOUNTS_KEY)
    if accounts is not None and accounts.named:
        text = render_accounts([(name, gateway.metrics) for name, gateway in accounts.served()])
    else:
        text = request.app[METRICS_KEY].render()
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


def setup_routes(app: web.Application) -> None:
    """``/metrics`` and ``/readyz`` (``/healthz`` is registered by core.app)."""
    from .health import readyz

    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/readyz", readyz)


__all__ = ["Metrics", "Counter", "Histogram", "Registry", "hash_user", "kind_label", "outcome_of"]
