"""The signals of a server with no master (`-w 0`): the same contract as the master's.

TERM drains within --graceful-timeout, after --drain-delay (during which the health
path answers 503 and every request is still served); INT and QUIT within about a second;
a second one of them, the delay's time included, stops at once; each is logged as it
arrives, with the requests in flight. USR1 reopens the log files. HUP reads the TLS
certificates again when the process serves TLS. HUP otherwise, USR2, TTIN and TTOU,
which gunicorn's master answers, are logged and change nothing: left to their defaults,
HUP, USR1 and USR2 would end the process and TTIN and TTOU stop it. Worker processes and
the master install their own (`worker_process.py`, `master.py`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.serving.dispatcher import QUICK_STOP_SECONDS

if TYPE_CHECKING:
    from corral.serving.dispatcher import Dispatcher

error_log = logging.getLogger("corral.error")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_MASTER_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU)


def install_single_process_handlers(
    dispatcher: Dispatcher, reload_tls: Callable[[], None] | None = None
) -> None:
    """On the main thread, before the server says it listens: a signal sent as soon as
    it does must find its handler. `reload_tls`, safe to call in a signal handler, has
    the TLS certificates read again (HUP)."""
    dispatcher.prepare_signals()
    handlers = _Handlers(dispatcher, reload_tls)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, handlers.stop)
    for signum in _MASTER_SIGNALS:
        signal.signal(signum, handlers.master_signal)


class _Handlers:
    def __init__(self, dispatcher: Dispatcher, reload_tls: Callable[[], None] | None) -> None:
        self.dispatcher = dispatcher
        self.reload_tls = reload_tls

    def stop(self, signum: int, _frame: object) -> None:
        dispatcher = self.dispatcher
        name = signal.Signals(signum).name.removeprefix("SIG")
        if dispatcher.stop_asked:
            # Said first: stopping at once may end a request on this very thread.
            error_log.info("Received %s again: stopping at once%s", name, self._running())
            self._act(signum)
            return
        # Acted on before it is logged: a second signal can interrupt this handler
        # (Ctrl-C to a process group that a supervisor also forwards) and must then find
        # the first one counted.
        self._act(signum)
        if signum == signal.SIGTERM and dispatcher.drain_until:
            error_log.info(
                "Received TERM: serving on for %g s (--drain-delay), then stopping gracefully "
                "within %g s%s",
                dispatcher.drain_delay,
                dispatcher.graceful_timeout,
                self._running(),
            )
        elif signum == signal.SIGTERM:
            error_log.info(
                "Received TERM: stopping gracefully within %g s%s",
                dispatcher.graceful_timeout,
                self._running(),
            )
        else:
            error_log.info(
                "Received %s: stopping within %g s%s", name, QUICK_STOP_SECONDS, self._running()
            )

    def _act(self, signum: int) -> None:
        if signum == signal.SIGTERM:
            self.dispatcher.request_stop()
        else:
            self.dispatcher.request_quick_stop()

    def _running(self) -> str:
        busy = self.dispatcher.requests_in_flight()
        return f"; {len(busy)} request{'s' if len(busy) != 1 else ''} in flight" if busy else ""

    def master_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name.removeprefix("SIG")
        if signum == signal.SIGUSR1:
            error_log.info("Received USR1: reopening log files")
            self.dispatcher.request_reopen()
            return
        if signum == signal.SIGHUP and self.reload_tls is not None:
            error_log.info("Received HUP: reading the TLS certificates again")
            self.reload_tls()
            return
        if signum == signal.SIGHUP:
            why = "reloading needs worker processes (-w N); --reload restarts on changes"
        elif signum == signal.SIGUSR2:
            why = "an upgrade on the same sockets needs worker processes (-w N)"
        else:
            why = "there are no worker processes to add or remove (-w N)"
        error_log.info("Received %s: ignored; %s", name, why)
