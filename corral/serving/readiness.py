"""Waiting for sockets to become readable: epoll on Linux, poll(2) elsewhere.

A descriptor watched `once` is disarmed when it is reported, so that it is handed to one
thread only, and armed again with `rearm` once served; `rearm` may be called from any
thread. `arm_writable` watches a descriptor once for room to send instead (a response
the client is slow to take), after which `rearm` or `resume` watch it for reading again.

A descriptor watched `edge` (epoll only; poll(2) ignores it) is reported when bytes
arrive, not while unread bytes remain: its reader must read until a read comes back
short, or look again itself. In exchange, connections come back in the order their bytes
arrived (see `EpollReadiness`).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading


class EpollReadiness:
    """One-shot registration in the kernel: `rearm` is a single thread-safe system call.

    Level-triggered, epoll puts every descriptor it reported back at the head of its
    ready list, to be checked on the next wait; a request that arrives later on a
    connection it dropped meanwhile (served last in the turn, its client not yet
    answered) joins the tail, behind all of them. Served in that order, such a request
    waits a whole turn, then for every other request of the next: under `wrk -c58`,
    1.5% of requests took twice the median. Edge-triggered (`edge`), the ready list is
    in order of arrival.
    """

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.edge: set[int] = set()

    def watch(self, fd: int, once: bool = False, edge: bool = False) -> None:
        flags = select.EPOLLIN | (select.EPOLLONESHOT if once else 0)
        if edge:
            self.edge.add(fd)
            flags |= select.EPOLLET
        self.epoll.register(fd, flags)

    def rearm(self, fd: int) -> None:
        self.epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)

    def arm_writable(self, fd: int) -> None:
        self.epoll.modify(fd, select.EPOLLOUT | select.EPOLLONESHOT)

    def pause(self, fd: int) -> None:
        self.epoll.modify(fd, 0)

    def resume(self, fd: int) -> None:
        self.epoll.modify(fd, select.EPOLLIN | (select.EPOLLET if fd in self.edge else 0))

    def forget(self, fd: int) -> None:
        self.edge.discard(fd)
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(fd)

    def wait(self, timeout: float) -> list[int]:
        return [fd for fd, _ in self.epoll.poll(timeout)]

    def close(self) -> None:
        self.epoll.close()


class PollReadiness:
    """poll(2) for systems without epoll; one-shot is emulated by unregistering.

    A poll already waiting does not see descriptors registered after it began, so `rearm`
    writes to `wake_fd` to make the waiting thread poll again.
    """

    def __init__(self, wake_fd: int) -> None:
        self.poller = select.poll()
        self.wake_fd = wake_fd
        self.once: set[int] = set()
        # Watched once for room to send, whether or not watched once for reading.
        self.writing: set[int] = set()
        self.lock = threading.Lock()

    def watch(self, fd: int, once: bool = False, edge: bool = False) -> None:
        # poll(2) has no edge-triggered mode: `edge` readers look again anyway.
        with self.lock:
            self.poller.register(fd, select.POLLIN)
            if once:
                self.once.add(fd)

    def rearm(self, fd: int) -> None:
        with self.lock:
            self.poller.register(fd, select.POLLIN)
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b"\0")

    def arm_writable(self, fd: int) -> None:
        with self.lock:
            self.poller.register(fd, select.POLLOUT)
            self.writing.add(fd)
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b"\0")

    def pause(self, fd: int) -> None:
        with self.lock, contextlib.suppress(KeyError):
            self.poller.unregister(fd)

    def resume(self, fd: int) -> None:
        with self.lock:
            self.poller.register(fd, select.POLLIN)
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b"\0")

    def forget(self, fd: int) -> None:
        with self.lock:
            self.once.discard(fd)
            self.writing.discard(fd)
            with contextlib.suppress(KeyError):
                self.poller.unregister(fd)

    def wait(self, timeout: float) -> list[int]:
        events = self.poller.poll(timeout * 1000)
        ready = []
        with self.lock:
            for fd, _ in events:
                if fd in self.once or fd in self.writing:
                    self.writing.discard(fd)
                    with contextlib.suppress(KeyError):
                        self.poller.unregister(fd)
                ready.append(fd)
        return ready

    def close(self) -> None:
        pass


def make_wake_pipe() -> tuple[int, int]:
    """(read end, write end) of a non-blocking pipe that signal handlers and other
    threads write a byte to, so that a loop waiting on the read end wakes up."""
    read_end, write_end = os.pipe()
    for fd in (read_end, write_end):
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
    return read_end, write_end


def make_readiness(kind: str, wake_fd: int) -> EpollReadiness | PollReadiness:
    """`kind` is "auto" (epoll where the system has it), "epoll" or "poll"."""
    if kind == "poll" or (kind == "auto" and not hasattr(select, "epoll")):
        return PollReadiness(wake_fd)
    return EpollReadiness()
