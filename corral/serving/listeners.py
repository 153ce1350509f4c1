"""Listening sockets from bind addresses: HOST:PORT, [IPv6]:PORT, unix:PATH, fd://N."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import stat
import struct
import sys
import weakref
from dataclasses import dataclass


class BindError(Exception):
    """An address cannot be listened on; the message says which and why."""


def parse_address(address: str) -> tuple[str, str | int | tuple[str, int]]:
    """('tcp', (host, port)), ('unix', path) or ('fd', n) for one bind address."""
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise BindError(f"{address!r}: unix: needs a path")
        return "unix", path
    if address.startswith("fd://"):
        try:
            return "fd", int(address[5:])
        except ValueError:
            raise BindError(f"{address!r}: fd:// needs a number") from None
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        if not rest.startswith(":"):
            raise BindError(f"{address!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep:
            host, port_text = address, "8000"
    try:
        port = int(port_text)
    except ValueError:
        raise BindError(f"{address!r}: {port_text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise BindError(f"{address!r}: port must be 0 to 65535")
    return "tcp", (host or "0.0.0.0", port)


# A master started by USR2 finds its predecessor's listening sockets here ("3,4").
INHERITED_FDS_VARIABLE = "CORRAL_LISTEN_FDS"
_SYSTEMD_FIRST_FD = 3


def inherited_listeners() -> list[socket.socket]:
    """Listening sockets handed over at exec: by the previous master on USR2, or by
    systemd socket activation (LISTEN_FDS for LISTEN_PID). These are process-start
    protocols, not settings, so they are read from the environment here, once.

    As in gunicorn and libsystemd's sd_listen_fds(3) told to unset the environment,
    systemd's sockets are taken only when LISTEN_PID is this process (variables a parent
    left behind are not ours), from fd 3 on, and LISTEN_PID, LISTEN_FDS and
    LISTEN_FDNAMES are then removed from the environment, so that no process this one
    starts takes them again. Raises `BindError` when a descriptor handed over is not a
    listening stream socket."""
    fds: list[int] = []
    handed_over = os.environ.pop(INHERITED_FDS_VARIABLE, "")
    if handed_over:
        fds = [int(part) for part in handed_over.split(",") if part.strip().isdigit()]
    elif os.environ.get("LISTEN_PID") == str(os.getpid()):
        count_text = os.environ.get("LISTEN_FDS", "")
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
        if not count_text.isdigit():
            raise BindError(f"LISTEN_FDS={count_text!r} is not a number of sockets")
        fds = list(range(_SYSTEMD_FIRST_FD, _SYSTEMD_FIRST_FD + int(count_text)))
    listeners: list[socket.socket] = []
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as error:
            for taken in listeners:
                taken.close()
            raise BindError(f"inherited fd {fd} is not a socket: {error.strerror}") from None
        problem = ""
        if sock.type != socket.SOCK_STREAM:
            problem = "is not a stream socket (ListenStream=)"
        elif not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            # systemd's Accept=yes hands over one accepted connection per process.
            problem = "is not listening (a connection: Accept=yes is not supported)"
        if problem:
            for taken in [*listeners, sock]:
                taken.close()
            raise BindError(f"inherited fd {fd} {problem}")
        os.set_inheritable(fd, False)
        listeners.append(sock)
    return listeners


def handover_environment(listeners: list[socket.socket]) -> dict[str, str]:
    """Make `listeners` survive exec and say where they are, for the next master."""
    for sock in listeners:
        os.set_inheritable(sock.fileno(), True)
    return {INHERITED_FDS_VARIABLE: ",".join(str(sock.fileno()) for sock in listeners)}


# The TCP listening sockets this process (or the master that forked it) bound itself: no
# other program holds them, so none serves on once corral closes them.
_BOUND_HERE: weakref.WeakSet[socket.socket] = weakref.WeakSet()
_SO_ATTACH_FILTER = 26
# A classic BPF socket filter (linux/filter.h) that drops a segment with SYN set and ACK
# unset, and keeps any other: run on a listening socket, it turns away new connections
# while handshakes already answered still complete. Offset 13 of the TCP header holds
# its flags (SYN 0x02, ACK 0x10).
_DROP_NEW_CONNECTIONS = (
    (0x30, 0, 0, 13),  # A = the flags byte
    (0x54, 0, 0, 0x12),  # A &= SYN | ACK
    (0x15, 0, 1, 0x02),  # A == SYN ? next : skip one
    (0x06, 0, 0, 0),  # drop
    (0x06, 0, 0, 0xFFFFFFFF),  # keep
)


def stop_new_connections(sock: socket.socket) -> bool:
    """Have the kernel drop connection attempts (SYNs) to the TCP listener `sock` from now
    on, so that none is queued in the moment before it closes, where closing would reset
    it after its client (a balancer) may have sent a request. A client whose SYN was
    dropped sends it again a second later, finds the port closed, and tries elsewhere
    before sending anything. Only for a socket this process bound itself: one inherited
    (systemd, USR2, fd://) is held by another program that serves on with it. True if
    the filter is on (Linux); False where it cannot be."""
    if sock not in _BOUND_HERE or not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(
        b"".join(struct.pack("HBBI", *line) for line in _DROP_NEW_CONNECTIONS)
    )
    # struct sock_fprog: the count of instructions, then a pointer to them.
    fprog = struct.pack("HL", len(_DROP_NEW_CONNECTIONS), ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def listen(address: str, backlog: int, reuse_port: bool = False) -> socket.socket:
    kind, where = parse_address(address)
    try:
        if kind == "fd":
            assert isinstance(where, int)
            sock = socket.socket(fileno=where)
            sock.listen(backlog)
            return sock
        if kind == "unix":
            assert isinstance(where, str)
            with contextlib.suppress(FileNotFoundError):
                # A socket file is what an earlier server left behind; any other file
                # is someone's data, which binding over would need deleting.
                if not stat.S_ISSOCK(os.stat(where).st_mode):
                    raise BindError(f"cannot listen on {address}: {where} is not a socket")
                os.unlink(where)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(where)
            sock.listen(backlog)
            bound = os.stat(where)
            _SOCKET_FILES[sock] = SocketFile(where, bound.st_dev, bound.st_ino)
            return sock
        assert isinstance(where, tuple)
        host, port = where
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(sockaddr)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        _BOUND_HERE.add(sock)
        return sock
    except OSError as error:
        raise BindError(f"cannot listen on {address}: {error.strerror or error}") from None


@dataclass(frozen=True)
class SocketFile:
    """The file of a unix socket bound by this process: its path, and the device and
    inode it had when bound, to tell it from a file a later server bound there."""

    path: str
    device: int
    inode: int


# The unix sockets bound here (not inherited from systemd, a previous master or --reload).
_SOCKET_FILES: weakref.WeakKeyDictionary[socket.socket, SocketFile] = weakref.WeakKeyDictionary()


def socket_files(listeners: list[socket.socket]) -> list[SocketFile]:
    """The files of those of `listeners` that are unix sockets bound by this process."""
    return [_SOCKET_FILES[sock] for sock in listeners if sock in _SOCKET_FILES]


def remove_socket_files(files: list[SocketFile]) -> None:
    """Unlink each socket file that is still the one bound here, as gunicorn does when
    it stops: one left behind would be found by clients as a refused connection. A file
    another server has bound there since stays. Never raises."""
    for file in files:
        try:
            found = os.stat(file.path)
            if (found.st_dev, found.st_ino) == (file.device, file.inode):
                os.unlink(file.path)
        except OSError:
            pass


def describe(sock: socket.socket, scheme: str = "http") -> str:
    """The URL-ish name a user would connect to; `scheme` "https" when it serves TLS."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class ListenerInfo:
    """What requests through one listening socket are told of it (PEP 3333's
    SERVER_NAME, SERVER_PORT and wsgi.url_scheme): a scheme of "https" once TLS is served
    on it."""

    name: str
    port: str
    scheme: str = "http"


def listener_info(sock: socket.socket) -> ListenerInfo:
    """A unix socket is "localhost" with no port, as gunicorn and Werkzeug say."""
    if sock.family == socket.AF_UNIX:
        return ListenerInfo("localhost", "")
    host, port = sock.getsockname()[:2]
    return ListenerInfo(str(host), str(port))
