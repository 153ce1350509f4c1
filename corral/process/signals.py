"""The signals of a server with no master (`-w 0`): the same contract as the master's.

TERM drains within --graceful-timeout; INT and QUIT within about a second; a second one of
them stops at once; each is logged as it arrives, with the requests in flight. USR1
reopens the log files. HUP, USR2, TTIN and TTOU, which gunicorn's master answers, are
logged and change nothing: left to their defaults, HUP, USR1 and USR2 would end the
process and TTIN and TTOU stop it. Worker processes and the master install their own
(`worker_process.py`, `master.py`).
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from corral.serving.dispatcher import QUICK_STOP_SECONDS

if TYPE_CHECKING:
    from corral.serving.dispatcher import Dispatcher

error_log = logging.getLogger("corral.error")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_MASTER_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU)


def install_single_process_handlers(dispatcher: Dispatcher) -> None:
    """On the main thread, before the server says it listens: a signal sent as soon as
    it does must find its handler."""
    dispatcher.prepare_signals()
    handlers = _Handlers(dispatcher)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, handlers.stop)
    for signum in _MASTER_SIGNALS:
        signal.signal(signum, handlers.master_signal)


class _Handlers:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def stop(self, signum: int, _frame: object) -> None:
        dispatcher = self.dispatcher
        name = signal.Signals(signum).name.removeprefix("SIG")
        busy = dispatcher.requests_in_flight()
        running = f"; {len(busy)} request{'s' if len(busy) != 1 else ''} in flight" if busy else ""
        if dispatcher.stop_requested:
            error_log.info("Received %s again: stopping at once%s", name, running)
        elif signum == signal.SIGTERM:
            error_log.info(
                "Received TERM: stopping gracefully within %g s%s",
                dispatcher.graceful_timeout,
                running,
            )
        else:
            error_log.info("Received %s: stopping within %g s%s", name, QUICK_STOP_SECONDS, running)
        if signum == signal.SIGTERM:
            dispatcher.request_stop()
        else:
            dispatcher.request_quick_stop()

    def master_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name.removeprefix("SIG")
        if signum == signal.SIGUSR1:
            error_log.info("Received USR1: reopening log files")
            self.dispatcher.request_reopen()
            return
        if signum == signal.SIGHUP:
            why = "reloading needs worker processes (-w N); --reload restarts on changes"
        elif signum == signal.SIGUSR2:
            why = "an upgrade on the same sockets needs worker processes (-w N)"
        else:
            why = "there are no worker processes to add or remove (-w N)"
        error_log.info("Received %s: ignored; %s", name, why)
