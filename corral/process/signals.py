"""The signals of a server with no master (`-w 0`): the same contract as the master's.

TERM drains within --graceful-timeout, after --drain-delay (during which the health
path answers 503 and every request is still served); INT and QUIT within about a second;
a second one of them, the delay's time included, stops at once; each is logged as it
arrives, with the requests in flight. USR1 reopens the log files. HUP reads the TLS
certificates again when the process serves TLS. HUP otherwise, USR2, TTIN and TTOU,
which gunicorn's master answers, are logged and change nothing: left to their defaults,
HUP, USR1 and USR2 would end the process and TTIN and TTOU stop it. Under systemd
(`corral.process.sd_notify`) the process says STOPPING=1 on a stop, and answers every
HUP with RELOADING=1 then READY=1, as a `Type=notify-reload` unit waits for, whether or
not there was anything to read again. Worker processes and
the master install their own (`worker_process.py`, `master.py`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.process.sd_notify import ServiceNotifier
from corral.serving.dispatcher import QUICK_STOP_SECONDS

if TYPE_CHECKING:
    from corral.serving.dispatcher import Dispatcher

error_log = logging.getLogger("corral.error")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_MASTER_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU)


def install_single_process_handlers(
    dispatcher: Dispatcher,
    reload_tls: Callable[[], None] | None = None,
    notifier: ServiceNotifier | None = None,
) -> None:
    """On the main thread, before the server says it listens: a signal sent as soon as
    it does must find its handler. `reload_tls`, safe to call in a signal handler, has
    the TLS certificates read again (HUP), and tells `notifier` when it is done."""
    dispatcher.prepare_signals()
    handlers = _Handlers(dispatcher, reload_tls, notifier or ServiceNotifier(None))
    for signum in _STOP_SIGNALS:
        signal.signal(signum, handlers.stop)
    for signum in _MASTER_SIGNALS:
        signal.signal(signum, handlers.master_signal)


class _Handlers:
    def __init__(
        self,
        dispatcher: Dispatcher,
        reload_tls: Callable[[], None] | None,
        notifier: ServiceNotifier,
    ) -> None:
        self.dispatcher = dispatcher
        self.reload_tls = reload_tls
        self.notifier = notifier

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
            self.notifier.stopping(
                f"Stopping: serving on for {dispatcher.drain_delay:g} s (--drain-delay), "
                f"then finishing requests in flight within {dispatcher.graceful_timeout:g} s"
            )
            error_log.info(
                "Received TERM: serving on for %g s (--drain-delay), then stopping gracefully "
                "within %g s%s",
                dispatcher.drain_delay,
                dispatcher.graceful_timeout,
                self._running(),
            )
        elif signum == signal.SIGTERM:
            self.notifier.stopping(
                f"Stopping: finishing requests in flight within {dispatcher.graceful_timeout:g} s"
            )
            error_log.info(
                "Received TERM: stopping gracefully within %g s%s",
                dispatcher.graceful_timeout,
                self._running(),
            )
        else:
            self.notifier.stopping("Stopping quickly")
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
            # READY=1 follows from the loop, once they are read (or kept).
            self.notifier.reloading()
            self.reload_tls()
            return
        if signum == signal.SIGHUP:
            self.notifier.reloading()
            self.notifier.ready_again()
            why = "reloading needs worker processes (-w N); --reload restarts on changes"
        elif signum == signal.SIGUSR2:
            why = "an upgrade on the same sockets needs worker processes (-w N)"
        else:
            why = "there are no worker processes to add or remove (-w N)"
        error_log.info("Received %s: ignored; %s", name, why)
