"""--reload: serve from a child process, and start a fresh one when the app's code changes.

As with Werkzeug's reloader, the code is reloaded by starting a new interpreter, so it
works however the app was imported (--preload, the Flask command). The reloader opens the
listening sockets once and hands them to each child, so no connection is refused during a
restart. The child serves exactly as it would without --reload; whichever process holds
the app's modules (the one serving process, or each worker) watches their files and
writes `changed PATH` to a pipe the reloader gave it. A child that cannot load the app
writes `watch PATH` for the files involved, and the reloader waits for one of them to
change before it tries again, as `flask run` does.

TERM, INT and QUIT to the reloader go to the child, and the reloader exits with the
child's status; HUP, USR1, TTIN and TTOU are passed on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
from collections.abc import Collection
from functools import partial

from corral.app_loading import AppLoadError
from corral.config import Config
from corral.process.source_watcher import (
    Stamp,
    app_source_files,
    change_events_available,
    stamps,
    start_watching,
)
from corral.serving.listeners import handover_environment, remove_socket_files, socket_files
from corral.serving.readiness import make_wake_pipe

error_log = logging.getLogger("corral.error")

# The child finds the write end of its pipe to the reloader here. Like the listening
# sockets' variable, a process-start protocol rather than a setting.
CHANNEL_VARIABLE = "CORRAL_RELOAD_FD"
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_PASSED_ON = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU)
# A child asked to stop for a restart gets this long, then a second INT (which stops it
# at once), then as long again before SIGKILL.
_RESTART_GRACE = 2.0
_unset = -2
_channel = _unset


def reload_channel() -> int | None:
    """In a child of the reloader, the fd to report to; None elsewhere. Read from the
    environment once, and taken out of it, so no process the app starts inherits it."""
    global _channel
    if _channel == _unset:
        value = os.environ.pop(CHANNEL_VARIABLE, "")
        _channel = int(value) if value.isdigit() else -1
        if _channel >= 0:
            os.set_inheritable(_channel, False)
    return _channel if _channel >= 0 else None


def _tell_reloader(lines: Collection[str]) -> None:
    channel = reload_channel()
    if channel is None or not lines:
        return
    with contextlib.suppress(OSError):
        os.write(channel, "".join(f"{line}\n" for line in lines).encode())


def watch_app_sources() -> None:
    """In a child of the reloader, once the app is loaded: report the first change to one
    of its source files. Does nothing in a process the reloader did not start."""
    if reload_channel() is None:
        return
    if not change_events_available():
        error_log.info(
            "--reload polls the app's files once a second; "
            "pip install 'corral[reload]' gives change events"
        )
    start_watching(app_source_files, lambda path: _tell_reloader([f"changed {path}"]))


def report_load_failure(error: AppLoadError) -> None:
    """In a child of the reloader that cannot load the app: name the files whose change
    is worth another try."""
    files = app_source_files() | set(error.source_files)
    _tell_reloader([f"watch {path}" for path in sorted(files)])


def run_with_reloader(config: Config, exec_argv: list[str]) -> int:
    """Serve from children started with `exec_argv` until stopped; the exit status.

    Raises `BindError` when an address cannot be listened on."""
    # Imported here: the command imports this module before gevent patches anything.
    from corral.process.setup import configure_logging, give_unix_sockets_to_user
    from corral.serving.assembly import open_listeners

    configure_logging(config)
    bound = open_listeners(config, partial(give_unix_sockets_to_user, config))
    files = socket_files(bound)
    try:
        return Reloader(exec_argv, bound).run()
    finally:
        remove_socket_files(files)


class Reloader:
    def __init__(self, exec_argv: list[str], listeners: list[socket.socket]) -> None:
        self.exec_argv = exec_argv
        self.listeners = listeners
        self.pending: list[int] = []
        self.child: subprocess.Popen[bytes] | None = None
        self.channel = -1
        self.received = b""

    def run(self) -> int:
        self.wake_read, self.wake_write = make_wake_pipe()
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        for signum in (*_STOP_SIGNALS, *_PASSED_ON, signal.SIGCHLD):
            signal.signal(signum, self._queue_signal)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        error_log.info(
            "Reloader (pid %d): the server restarts when the app's source files change",
            os.getpid(),
        )
        # The changed file's stamp when the last restart was decided: an editor may
        # still be writing it, and a child that read it half-written fails to load.
        restarted_for: dict[str, Stamp] = {}
        while True:
            self._start_child()
            outcome = self._supervise()
            if isinstance(outcome, int):
                return outcome
            changed, code, watched = outcome
            if changed:
                error_log.info("Restarting: %s changed", changed)
                restarted_for = stamps([changed])
                self._stop_child_for_restart()
                continue
            if code == 0 or not watched:
                return code
            error_log.error(
                "The server exited with status %d; it restarts when the app's files change",
                code,
            )
            changed = next(
                (path for path, stamp in restarted_for.items() if stamps([path]) != {path: stamp}),
                "",
            ) or self._wait_for_change(watched)
            if not changed:
                return code
            error_log.info("Restarting: %s changed", changed)
            restarted_for = stamps([changed])

    def _queue_signal(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def _start_child(self) -> None:
        read_end, write_end = os.pipe()
        environment = dict(os.environ)
        environment.update(handover_environment(self.listeners))
        environment[CHANNEL_VARIABLE] = str(write_end)
        fds = [sock.fileno() for sock in self.listeners]
        try:
            self.child = subprocess.Popen(
                self.exec_argv, env=environment, pass_fds=[*fds, write_end]
            )
        finally:
            os.close(write_end)
        self.channel = read_end
        self.received = b""

    def _supervise(self) -> int | tuple[str, int, list[str]]:
        """Until the child exits or reports a change: the status to exit with (stopped),
        or (changed file or "", the child's status, files to watch)."""
        child = self.child
        assert child is not None
        watched: list[str] = []
        stopping = False
        while True:
            for signum in self._take_signals():
                if signum in _STOP_SIGNALS:
                    stopping = True
                with contextlib.suppress(OSError):
                    child.send_signal(signum)
            code = child.poll()
            if code is not None:
                self._read_channel(watched, block=False)
                self._close_channel()
                status = _exit_status(code)
                return status if stopping else ("", status, watched)
            changed = self._read_channel(watched, block=True)
            if changed and not stopping:
                return changed, 0, watched

    def _take_signals(self) -> list[int]:
        taken = [signum for signum in self.pending if signum != signal.SIGCHLD]
        self.pending.clear()
        return taken

    def _read_channel(self, watched: list[str], block: bool) -> str:
        """Wait up to half a second (or not at all) for the child's word; a changed
        file's path, or ""."""
        waiting = [self.wake_read] + ([self.channel] if self.channel >= 0 else [])
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(waiting, [], [], 0.5 if block else 0)
            if self.wake_read in readable:
                with contextlib.suppress(OSError):
                    os.read(self.wake_read, 4096)
            if self.channel in readable:
                while True:
                    piece = os.read(self.channel, 65536)
                    self.received += piece
                    if not piece:
                        self._close_channel()
                    if not piece or not select.select([self.channel], [], [], 0)[0]:
                        break
        lines = self.received.split(b"\n")
        self.received = lines.pop()
        changed = ""
        for line in lines:
            kind, _, path = line.decode(errors="replace").partition(" ")
            if kind == "watch":
                watched.append(path)
            elif kind == "changed" and not changed:
                changed = path
        return changed

    def _close_channel(self) -> None:
        if self.channel >= 0:
            os.close(self.channel)
            self.channel = -1

    def _stop_child_for_restart(self) -> None:
        child = self.child
        assert child is not None
        for signum in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
            with contextlib.suppress(OSError):
                child.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(_RESTART_GRACE)
                break
        child.wait()
        self._close_channel()
        # A stop asked for meanwhile is acted on with the next child.
        self.pending = [signum for signum in self.pending if signum in _STOP_SIGNALS]

    def _wait_for_change(self, files: list[str]) -> str:
        """After the child failed: the file whose change is worth a restart, or "" if the
        reloader was asked to stop."""
        found = sorted(set(files))
        read_end, write_end = os.pipe()
        start_watching(lambda: found, lambda path: _write_line(write_end, path))
        try:
            while True:
                if any(signum in _STOP_SIGNALS for signum in self._take_signals()):
                    return ""
                with contextlib.suppress(InterruptedError):
                    readable, _, _ = select.select([self.wake_read, read_end], [], [], 0.5)
                    if self.wake_read in readable:
                        os.read(self.wake_read, 4096)
                    if read_end in readable:
                        return os.read(read_end, 65536).decode(errors="replace").strip()
        finally:
            os.close(read_end)


def _write_line(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, f"{text}\n".encode())
    os.close(fd)


def _exit_status(code: int) -> int:
    """A child killed by a signal, as a shell reports it."""
    return 128 - code if code < 0 else code
