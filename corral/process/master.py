"""The pre-fork master: forks the workers, replaces the ones that die, and supervises.

It knows nothing of HTTP. It holds the listening sockets (opened before it starts), a
callable that runs one worker in a forked child, and the shared slot table
(`corral.process.slot_table`) in which each worker writes its state, and it answers
gunicorn's signals:

- HUP: read the configuration again and start new workers (which import the application
  afresh); the old ones are retired only once every new one is ready, and kept if the
  new ones fail to boot.
- TERM: graceful stop: each worker serves on for --drain-delay, its health path
  answering 503, then gives requests in flight --graceful-timeout; INT, QUIT: quick stop.
- TTIN, TTOU: one worker more, one fewer. USR1: reopen log files, here and in workers.
- USR2: start a new master on the same listening sockets (zero-downtime upgrade); the pid
  file moves to FILE.oldbin until this master is stopped.

Signal handlers only queue the signal; the loop acts on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import random
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from corral import compiled
from corral.config import Config
from corral.process.exit_codes import APP_LOAD_ERROR, RUNTIME_ERROR, WORKER_BOOT_ERROR
from corral.process.sd_notify import ServiceNotifier
from corral.process.slot_table import READY, RETIRING, SlotTable
from corral.serving.listeners import handover_environment
from corral.serving.readiness import make_wake_pipe

error_log = logging.getLogger("corral.error")

# One boot report is one write of at most PIPE_BUF bytes, so reports from workers failing
# together never interleave.
_BOOT_REPORT_LIMIT = select.PIPE_BUF
# Seconds a worker gets to write its tracebacks after SIGABRT before SIGKILL.
_ABORT_GRACE = 2.0
_QUICK_STOP_GRACE = 2.0
_LOOP_INTERVAL = 0.25
_BEAT_INTERVAL = 0.5
# What the master sends its workers (and an operator may): each would kill a worker that
# has no handler yet.
SIGNALS_TO_WORKERS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1})
_HANDLED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
)


def call_hook(config: Config, name: str, *arguments: Any) -> None:
    """Run the server hook `name` if the config file defined it; a hook that raises is
    logged with its traceback and does not stop the server."""
    function = getattr(config, name)
    if function is None:
        return
    try:
        function(*arguments)
    except Exception:
        error_log.exception("%s hook failed", name)


class Worker:
    """The master's record of one worker process; also the `worker` given to hooks."""

    def __init__(self, age: int, generation: int, config: Config, master_pid: int) -> None:
        self.age = age
        self.generation = generation
        self.cfg = config
        self.log = error_log
        self.pid = 0
        self.ppid = master_pid
        # Its slot in the master's table, and which of the N workers it is.
        self.slot = -1
        self.position = 0
        self.ready = False
        self.retiring = False
        self.deadline = 0.0
        self.aborted = False
        self.boot_timed_out = False
        self.spawned_at = time.monotonic()
        self.alive = True
        self.max_requests = 0

    def __repr__(self) -> str:
        return f"<worker {self.pid}>"


class Master:
    """The `server` given to hooks: `pid`, `cfg`, `log`, `num_workers`, `WORKERS`."""

    def __init__(
        self,
        config: Config,
        listeners: list[Any],
        run_worker: Callable[[Master, Worker], int],
        reload_config: Callable[[], Config],
        exec_argv: list[str],
        describe: Callable[[Config], str],
        reconfigure_logging: Callable[[Config], None],
        requests_per_worker: Callable[[Config], int] = lambda config: 1,
    ) -> None:
        self.cfg = config
        self.log = error_log
        self.listeners = listeners
        self.run_worker = run_worker
        self.reload_config = reload_config
        self.exec_argv = exec_argv
        self.describe = describe
        self.reconfigure_logging = reconfigure_logging
        self.requests_per_worker = requests_per_worker
        self.pid = os.getpid()
        self.num_workers = config.workers
        self.WORKERS: dict[int, Worker] = {}
        self.generation = 1
        self.previous_generation = 0
        self.ages = 0
        self.ever_ready = False
        self.pending_signals: list[int] = []
        self.stopping = False
        self.exit_code = 0
        self.pidfile: str | None = config.pid
        self.successor_pid = 0
        self.spawn_after = 0.0
        self.previous_config = config
        # True when the app was imported before the workers were forked (--preload, the
        # Flask command, run_simple): new workers then run the same code.
        self.app_imported = False
        self.boot_reports: dict[int, tuple[str, str]] = {}
        self.last_boot_traceback = ""
        # Mapped now, before any fork: each worker inherits it. Room for a reload's
        # overlap of old and new workers; past that, another region is mapped.
        self.slots = SlotTable(2 * max(config.workers, 1) + 4)
        # Places (0 to N-1) that have had a worker; a new worker in one is a restart.
        self.places_filled: set[int] = set()
        self.place_restarts: dict[int, int] = {}
        # The --stats listener (`corral.process.stats_server`), when there is one: this
        # process serves it on a thread of its own, reading only the table.
        self.stats: Any = None
        # systemd's Type=notify (`corral.process.sd_notify`): READY=1 once every worker
        # of the current generation has booted, again after each reload.
        self.notifier = ServiceNotifier(None)
        self.ready_announced = False

    def _hook(self, name: str, *arguments: Any) -> None:
        call_hook(self.cfg, name, *arguments)

    # Start and the loop.

    def run(self) -> int:
        """Supervise until stopped; the exit status for the command."""
        self.wake_read, self.wake_write = make_wake_pipe()
        self.boot_reports_read, self.boot_reports_write = os.pipe()
        os.set_blocking(self.boot_reports_read, False)
        os.set_blocking(self.boot_reports_write, False)
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        for signum in _HANDLED_SIGNALS:
            signal.signal(signum, self._queue_signal)
        if self.pidfile:
            try:
                write_pidfile(self.pidfile, self.pid)
            except OSError as error:
                error_log.critical("cannot write the pid file: %s", error)
                self.pidfile = None
                self.exit_code = RUNTIME_ERROR
                self.stopping = True
        error_log.info("corral master (pid %d), %s", self.pid, compiled.DESCRIPTION)
        self._describe_to_table(started=time.time())
        error_log.info("Concurrency: %s", self.describe(self.cfg))
        if self.stats is not None:
            self.stats.start()
        self._hook("when_ready", self)
        try:
            while not self.stopping:
                self._manage_workers()
                self._wait(_LOOP_INTERVAL)
                self._handle_signals()
                self._reap()
                self._check_workers()
                self._announce_ready()
        finally:
            self._shut_down()
        return self.exit_code

    def _queue_signal(self, signum: int, _frame: Any) -> None:
        self.pending_signals.append(signum)

    def _wait(self, timeout: float) -> None:
        if self.pending_signals:
            return
        with contextlib.suppress(InterruptedError):
            select.select([self.wake_read], [], [], timeout)
        with contextlib.suppress(OSError):
            os.read(self.wake_read, 4096)

    def _handle_signals(self) -> None:
        while self.pending_signals:
            signum = self.pending_signals.pop(0)
            if signum == signal.SIGCHLD:
                continue
            if signum == signal.SIGTERM and self.cfg.drain_delay and not self.successor_pid:
                error_log.info(
                    "Received TERM: serving on for %g s (--drain-delay), then stopping gracefully",
                    self.cfg.drain_delay,
                )
                self._stop(quick=False)
            elif signum == signal.SIGTERM:
                error_log.info("Received TERM: stopping gracefully")
                self._stop(quick=False)
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                name = signal.Signals(signum).name.removeprefix("SIG")
                error_log.info("Received %s: stopping quickly", name)
                self._stop(quick=True)
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum == signal.SIGTTIN:
                self._resize(self.num_workers + 1)
            elif signum == signal.SIGTTOU:
                self._resize(self.num_workers - 1)
            elif signum == signal.SIGUSR1:
                self._reopen_logs()
            elif signum == signal.SIGUSR2:
                self._start_successor()

    # Workers.

    def _describe_to_table(self, started: float = 0.0) -> None:
        """Tell the table's readers what serves: the workers kept, each one's concurrency
        and the start-up line's account."""
        self.slots.describe(
            self.pid,
            self.num_workers,
            self.requests_per_worker(self.cfg),
            self.describe(self._config_with_workers(self.num_workers)),
            started,
        )

    def _spawn(self) -> None:
        self.ages += 1
        worker = Worker(self.ages, self.generation, self.cfg, self.pid)
        if self.cfg.max_requests:
            worker.max_requests = self.cfg.max_requests + random.randint(
                0, self.cfg.max_requests_jitter
            )
        self._take_place(worker)
        worker.slot = self.slots.claim(worker.position, self.place_restarts.get(worker.position, 0))
        self._hook("pre_fork", self, worker)
        # These signals stay blocked in the child until the worker has its own handlers
        # (`unblock_signals_to_workers`): one arriving before would kill it mid-boot.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS_TO_WORKERS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS_TO_WORKERS)
            self.slots.release(worker.slot)
            raise
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS_TO_WORKERS)
            worker.pid = pid
            self.WORKERS[pid] = worker
            return
        # The child: from here on this process is the worker, and it never returns.
        code = 1
        try:
            worker.pid = os.getpid()
            self._forget_in_child(worker)
            code = self.run_worker(self, worker)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            error_log.exception("worker %d failed", os.getpid())
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
            os._exit(code)

    def _forget_in_child(self, worker: Worker) -> None:
        signal.set_wakeup_fd(-1)
        for signum in _HANDLED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        os.close(self.wake_read)
        os.close(self.wake_write)
        os.close(self.boot_reports_read)
        if self.stats is not None:
            self.stats.close_in_child()
        self.WORKERS = {}
        self.pending_signals = []

    def _take_place(self, worker: Worker) -> None:
        """The lowest place no current worker holds; a worker taking a place that had
        one before (which died, retired, or was replaced by a reload) is a restart."""
        held = {other.position for other in self._current()}
        position = next(place for place in range(len(held) + 1) if place not in held)
        worker.position = position
        if position in self.places_filled:
            self.place_restarts[position] = self.place_restarts.get(position, 0) + 1
            self.slots.count_restart()
        self.places_filled.add(position)

    def _current(self) -> list[Worker]:
        return [
            worker
            for worker in self.WORKERS.values()
            if worker.generation == self.generation and not worker.retiring
        ]

    def _manage_workers(self) -> None:
        if self.stopping:
            return
        current = self._current()
        missing = self.num_workers - len(current)
        if missing > 0 and time.monotonic() >= self.spawn_after:
            for _ in range(missing):
                self._spawn()
        elif missing < 0:
            for worker in sorted(current, key=lambda worker: worker.age)[:-missing]:
                self._retire(worker, "fewer workers asked for")
                # Its place goes: a worker taking it after TTIN is no restart.
                self.places_filled.discard(worker.position)
        current = self._current()
        if (
            self.previous_generation
            and len(current) >= self.num_workers
            and all(worker.ready for worker in current)
        ):
            for worker in list(self.WORKERS.values()):
                if worker.generation < self.generation and not worker.retiring:
                    self._retire(worker, "replaced by a reloaded worker")
            self.previous_generation = 0
            error_log.info("Reload complete: the new workers serve (%d)", self.num_workers)

    def _announce_ready(self) -> None:
        """Tell systemd the service serves: at start, and when a reload is over."""
        if self.ready_announced or self.stopping or self.previous_generation:
            return
        current = self._current()
        if len(current) >= self.num_workers and all(worker.ready for worker in current):
            self.ready_announced = True
            self.notifier.ready(self.describe(self._config_with_workers(self.num_workers)))

    def _retire(self, worker: Worker, reason: str) -> None:
        error_log.info("Retiring worker %d: %s", worker.pid, reason)
        worker.retiring = True
        worker.deadline = time.monotonic() + self.cfg.graceful_timeout + 1.0
        _signal(worker.pid, signal.SIGTERM)

    def _check_workers(self) -> None:
        now = time.monotonic()
        timeout = self.cfg.timeout
        for worker in list(self.WORKERS.values()):
            state, beat, busy_since = self.slots.heartbeat(worker.slot)
            if state == READY and not worker.ready:
                worker.ready = True
                self.ever_ready = True
                error_log.info("Booted worker %d", worker.pid)
            elif state == RETIRING and not worker.retiring:
                # The worker retires itself (--max-requests, --max-worker-memory) and has
                # logged why; its replacement starts on the next turn of the loop.
                worker.ready = True
                worker.retiring = True
                worker.deadline = now + self.cfg.graceful_timeout + 1.0
            if worker.deadline and now > worker.deadline:
                error_log.error("Worker %d did not stop in time; killing it", worker.pid)
                worker.deadline = 0.0
                _signal(worker.pid, signal.SIGKILL)
                continue
            if timeout and not worker.ready and not worker.boot_timed_out:
                if now - worker.spawned_at > timeout:
                    # An import that hangs (a database reached at import time, say).
                    error_log.error(
                        "Worker %d did not boot within --timeout %g s; killing it",
                        worker.pid,
                        timeout,
                    )
                    worker.boot_timed_out = True
                    _signal(worker.pid, signal.SIGKILL)
                continue
            if not timeout or not worker.ready or worker.retiring or worker.aborted:
                continue
            # A worker that serves on its loop thread cannot beat during a request, and
            # beats twice a second otherwise: allow for the beat it could not write.
            stalled = now - beat - _BEAT_INTERVAL
            running = now - busy_since if busy_since else 0.0
            if max(stalled, running) > timeout:
                error_log.critical(
                    "WORKER TIMEOUT (pid %d): no answer for %.1f s (--timeout %g); "
                    "its tracebacks follow, then it is killed",
                    worker.pid,
                    max(stalled, running),
                    timeout,
                )
                worker.aborted = True
                worker.deadline = now + _ABORT_GRACE
                _signal(worker.pid, signal.SIGABRT)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid == self.successor_pid:
                self._successor_exited(code)
                continue
            worker = self.WORKERS.pop(pid, None)
            if worker is None:
                continue
            worker.alive = False
            self._log_exit(worker, code)
            self._hook("child_exit", self, worker)
            self.slots.release(worker.slot)
            if (code == WORKER_BOOT_ERROR or worker.boot_timed_out) and not worker.ready:
                self._boot_failed(worker)

    def _log_exit(self, worker: Worker, code: int) -> None:
        if worker.aborted:
            error_log.error("Worker %d killed after --timeout", worker.pid)
        elif code < 0:
            name = signal.Signals(-code).name
            log = error_log.info if worker.retiring or self.stopping else error_log.error
            log("Worker %d was killed by %s", worker.pid, name)
        elif code == 0:
            error_log.info("Worker %d exited", worker.pid)
        elif code != WORKER_BOOT_ERROR:
            error_log.error("Worker %d exited with status %d", worker.pid, code)

    # Boot failures.

    def report_boot_failure(self, message: str, traceback_text: str) -> None:
        """In a worker that cannot load the app: tell the master why, so that it logs the
        traceback once however many workers fail the same way."""
        header = f"{os.getpid()}\n{message}\n".encode()
        text = traceback_text.encode()
        room = _BOOT_REPORT_LIMIT - len(header) - 1
        if len(text) > room:
            text = b"...\n" + text[-(room - 4) :]
        with contextlib.suppress(OSError):
            os.write(self.boot_reports_write, header[:_BOOT_REPORT_LIMIT] + text + b"\0")

    def _read_boot_reports(self) -> None:
        received = b""
        while True:
            try:
                piece = os.read(self.boot_reports_read, 65536)
            except OSError:
                break
            if not piece:
                break
            received += piece
        for record in received.split(b"\0"):
            pid, _, rest = record.decode(errors="replace").partition("\n")
            message, _, traceback_text = rest.partition("\n")
            if pid.isdigit():
                self.boot_reports[int(pid)] = (message, traceback_text)

    def _log_boot_report(self, worker: Worker) -> str:
        """The worker's reason for failing, its traceback logged unless just logged."""
        self._read_boot_reports()
        message, traceback_text = self.boot_reports.pop(worker.pid, ("", ""))
        if traceback_text and traceback_text != self.last_boot_traceback:
            error_log.error("Worker %d:\n%s", worker.pid, traceback_text.rstrip())
        self.last_boot_traceback = traceback_text or self.last_boot_traceback
        return message

    def _boot_failed(self, worker: Worker) -> None:
        if not self.ever_ready:
            if self.stopping:
                # A second worker failing the same way while the first one stops us.
                self._log_boot_report(worker)
                return
            message = self._log_boot_report(worker)
            if message:
                error_log.critical("Worker failed to boot: %s; stopping", message)
            else:
                error_log.critical("Worker failed to boot; stopping (its error is above)")
            self.exit_code = APP_LOAD_ERROR
            self._stop(quick=True)
            return
        message = self._log_boot_report(worker)
        if message:
            error_log.error("Worker %d: %s", worker.pid, message)
        if self.previous_generation and worker.generation == self.generation:
            error_log.error("Reload failed: a new worker could not boot; the old ones serve on")
            failed = self.generation
            self.generation = self.previous_generation
            self.previous_generation = 0
            self.cfg = self.previous_config
            self.num_workers = self.cfg.workers
            self._describe_to_table()
            for other in list(self.WORKERS.values()):
                if other.generation == failed and not other.retiring:
                    self._retire(other, "reload failed")
        else:
            # The application broke while running (a file changed under it, say):
            # keep trying, but not in a tight loop.
            error_log.error("Worker failed to boot; trying again in 1 s")
            self.spawn_after = time.monotonic() + 1.0

    # Signals' work.

    def _reload(self) -> None:
        if self.previous_generation:
            error_log.info("Received HUP during a reload: ignored")
            return
        error_log.info("Received HUP: reloading")
        # READY=1 follows once the new workers serve, or the old ones are kept.
        self.notifier.reloading()
        self.ready_announced = False
        try:
            config = self.reload_config()
        except Exception as error:
            error_log.error("Reload failed: %s; keeping the running configuration", error)
            return
        if config.bind != self.cfg.bind:
            error_log.warning("New --bind addresses take effect only on restart or USR2")
        if self.app_imported:
            error_log.warning(
                "The app was imported before the workers started (--preload, the Flask "
                "command or run_simple): HUP reloads settings, not the app's code; "
                "--reload serves new code"
            )
        self.previous_config = self.cfg
        self.cfg = config
        self.reconfigure_logging(config)
        self._hook("on_reload", self)
        self.previous_generation = self.generation
        self.generation += 1
        self._set_worker_count(config.workers)
        self._describe_to_table()

    def _resize(self, count: int) -> None:
        self._set_worker_count(max(count, 1))

    def _set_worker_count(self, count: int) -> None:
        if count == self.num_workers:
            return
        old, self.num_workers = self.num_workers, count
        error_log.info("Workers: %d (was %d)", count, old)
        self._hook("nworkers_changed", self, count, old)
        self._describe_to_table()
        concurrency = self.describe(self._config_with_workers(count))
        error_log.info("Concurrency: %s", concurrency)
        self.notifier.status(concurrency)

    def _config_with_workers(self, count: int) -> Config:
        return dataclasses.replace(self.cfg, workers=count)

    def _reopen_logs(self) -> None:
        error_log.info("Received USR1: reopening log files")
        self.reconfigure_logging(self.cfg)
        for pid in self.WORKERS:
            _signal(pid, signal.SIGUSR1)

    def _start_successor(self) -> None:
        if self.successor_pid:
            error_log.warning(
                "Received USR2, but a new master (%d) already runs", self.successor_pid
            )
            return
        error_log.info("Received USR2: starting a new master on the same sockets")
        self._hook("pre_exec", self)
        if self.pidfile:
            old_pidfile = self.pidfile + ".oldbin"
            with contextlib.suppress(OSError):
                os.replace(self.pidfile, old_pidfile)
            self.pidfile = old_pidfile
        environment = dict(os.environ)
        environment.update(handover_environment(self.listeners))
        if self.stats is not None:
            environment.update(self.stats.handover_environment())
        pid = os.fork()
        if pid == 0:
            try:
                os.execve(self.exec_argv[0], self.exec_argv, environment)
            finally:
                os._exit(127)
        for sock in self.listeners:
            os.set_inheritable(sock.fileno(), False)
        self.successor_pid = pid
        error_log.info("New master started (pid %d); stop this one with QUIT or TERM", pid)

    def _successor_exited(self, code: int) -> None:
        error_log.error("The new master (%d) exited with status %d", self.successor_pid, code)
        self.successor_pid = 0
        if self.pidfile and self.pidfile.endswith(".oldbin"):
            original = self.pidfile[: -len(".oldbin")]
            with contextlib.suppress(OSError):
                os.replace(self.pidfile, original)
            self.pidfile = original

    # Stopping.

    def _stop(self, quick: bool) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.quick = quick
        finishing = f"finishing requests in flight within {self.cfg.graceful_timeout:g} s"
        if quick:
            self.notifier.stopping("Stopping quickly")
        elif self.cfg.drain_delay and not self.successor_pid:
            self.notifier.stopping(
                f"Stopping: serving on for {self.cfg.drain_delay:g} s (--drain-delay), "
                f"then {finishing}"
            )
        else:
            self.notifier.stopping(f"Stopping: {finishing}")

    def _shut_down(self) -> None:
        quick = getattr(self, "quick", True)
        signum = signal.SIGQUIT if quick else signal.SIGTERM
        drain_delay = 0.0
        if not quick and not self.successor_pid:
            # The server stops for good, not only this master (a new one after USR2
            # serves on the same sockets): the workers run --drain-delay first.
            self.slots.mark_stopping()
            drain_delay = self.cfg.drain_delay
        for pid in self.WORKERS:
            _signal(pid, signum)
        # The workers hold the listening sockets open while they serve on (the drain
        # delay); the last one to close them closes them, and a new connection is then
        # refused. Kept open here, a socket would go on queueing connections that no one
        # accepts until this master exits, and then reset them.
        for sock in self.listeners:
            sock.close()
        grace = _QUICK_STOP_GRACE if quick else drain_delay + self.cfg.graceful_timeout + 1.0
        deadline = time.monotonic() + grace
        while self.WORKERS and time.monotonic() < deadline:
            self._wait(0.1)
            forced = any(
                signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
                for signum in self.pending_signals
            )
            self.pending_signals.clear()
            self._reap()
            if forced:
                error_log.info("Stopping at once")
                break
        for pid in list(self.WORKERS):
            _signal(pid, signal.SIGKILL)
        while self.WORKERS:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            worker = self.WORKERS.pop(pid, None)
            if worker is not None:
                self._hook("child_exit", self, worker)
                self.slots.release(worker.slot)
        if self.pidfile:
            remove_pidfile(self.pidfile, self.pid)
        os.close(self.boot_reports_read)
        os.close(self.boot_reports_write)
        signal.set_wakeup_fd(-1)
        self._hook("on_exit", self)
        error_log.info("Master stopped")


def unblock_signals_to_workers() -> None:
    """In a worker, once its handlers for `SIGNALS_TO_WORKERS` are in place."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS_TO_WORKERS)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError as error:
        # The process is already gone; reaping will tell.
        if error.errno != errno.ESRCH:
            raise


def write_pidfile(path: str, pid: int) -> None:
    temporary = f"{path}.{pid}.tmp"
    with open(temporary, "w") as file:
        file.write(f"{pid}\n")
    os.replace(temporary, path)


def remove_pidfile(path: str, pid: int) -> None:
    """Remove the pid file only if it is still ours (a new master may have written it)."""
    try:
        with open(path) as file:
            if file.read().strip() != str(pid):
                return
        os.unlink(path)
    except OSError:
        pass
