"""Logging set-up: plain or JSON lines, each carrying the message id when there is one.

Every line is one line: control characters in a logged value (a MsgId, a user, an XML namespace
sent by a client) are escaped before any handler writes them, so nobody can forge log lines.
Users are logged as ``hash_user(openid)``, never as the OpenID.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from typing import Any

#: C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: What every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


@functools.lru_cache(maxsize=8192)  # every message logs its user twice; a user writes several
def hash_user(openid: str) -> str:
    """A short stable pseudonym for a user in logs (the first 10 hex digits of SHA-256)."""
    return hashlib.sha256(openid.encode("utf-8")).hexdigest()[:10]


def escape_control(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), m.group().encode("unicode_escape").decode("ascii")),
                        text)


class EscapeControlCharacters(logging.Filter):
    """Formats the message with its arguments and escapes it, and escapes text extras.

    The message as a whole is escaped (arguments may be any object whose ``str`` holds a newline);
    an exception's traceback is the formatter's and stays multi-line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports it (handleError)
            return True
        # Most lines hold no control character: one scan each, rewritten only when one is found.
        record.msg, record.args = escape_control(message) if _CONTROL.search(message) else message, ()
        fields = vars(record)
        for key in fields.keys() - _STANDARD:  # what came in through ``extra=``
            value = fields[key]
            if isinstance(value, str) and _CONTROL.search(value):
                fields[key] = escape_control(value)
        return True


class _MsgIdDefault(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "msg_id"):
            record.msg_id = "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
            "level": record.levelname, "logger": record.name, "msg_id": getattr(record, "msg_id", "-"),
            "message": record.getMessage()}
        for key in ("user", "intent", "plugin", "status", "total_ms", "try_number"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(msg_id)s] %(message)s"


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines; the time's text (``logging.Formatter``'s own, local time with
    milliseconds) is made once per second, not for every line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        return self.default_msec_format % (self._second[1], record.msecs)


def make_handler(as_json: bool = False, stream: Any = None) -> logging.Handler:
    """The handler ``setup_logging`` installs: escaped, one line per record, text or JSON."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_MsgIdDefault())
    handler.addFilter(EscapeControlCharacters())
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    return handler


def setup_logging(level: str = "INFO", as_json: bool = False) -> None:
    # What no line of ours shows is not collected for every record: the calling function's
    # file and line (a walk up the stack), the thread, process and multiprocessing names
    # (the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [make_handler(as_json)]
    root.setLevel(level.upper())
    logging.getLogger("jieba").setLevel(logging.WARNING)
