"""The master's settings: recycling workers, boot failures, logs, reload, sockets."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.functional.test_master import APP, get, start, wait_until, workers_of
from tests.server import ROOT


def run_to_exit(*arguments: str, modules: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`corral -b 127.0.0.1:0 ARGUMENTS`, expected to exit by itself; `modules` is put on
    the path for an app written by the test."""
    path = f"{modules}{os.pathsep}{ROOT}" if modules else str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_max_requests_recycles_the_worker_gracefully() -> None:
    with start(["-w", "1", "--max-requests", "5"], 1) as server:
        pids = [get(server.port).split()[0] for _ in range(12)]
        # The first worker answered its five, then its replacement took over.
        assert pids[:5] == [pids[0]] * 5
        assert pids[0] not in pids[5:], pids
        assert "retiring: served 5 requests (--max-requests 5)" in server.log


def test_max_worker_memory_recycles_a_worker_that_grew() -> None:
    with start(["-w", "1"], 1) as probe:
        (worker,) = workers_of(probe.process.pid)
        baseline = _resident_mib(worker)
    limit = str(int(baseline) + 20)
    with start(["-w", "1", "--max-worker-memory", limit], 1) as server:
        (first,) = workers_of(server.process.pid)
        get(server.port)
        time.sleep(1)
        assert first in workers_of(server.process.pid), "retired below its limit"
        get(server.port, "/grow?30")
        assert wait_until(lambda: first not in workers_of(server.process.pid), 5), server.log
        assert f"(--max-worker-memory {limit})" in server.log
        assert get(server.port).split()[0] != str(first)


def test_max_worker_memory_below_a_fresh_worker_is_ignored_not_looped() -> None:
    with start(["-w", "1", "--max-worker-memory", "1"], 1) as server:
        (worker,) = workers_of(server.process.pid)
        get(server.port)
        time.sleep(1.2)
        assert workers_of(server.process.pid) == {worker}
        assert "--max-worker-memory 1 is below a freshly started worker's" in server.log


def _resident_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_an_app_that_cannot_import_stops_the_master_with_one_line() -> None:
    result = run_to_exit("-w", "2", "no_such_module:app")
    assert result.returncode == 4
    assert result.stderr.strip() == (
        "corral: error: no module named 'no_such_module' (from 'no_such_module:app')"
    )


def test_an_app_that_fails_in_its_workers_stops_the_master(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('database unreachable')\n")
    result = run_to_exit("-w", "2", "broken_app:app", modules=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "RuntimeError: database unreachable" in result.stderr
    assert (
        "Worker failed to boot: cannot load app 'broken_app:app': RuntimeError: " in result.stderr
    )


def test_usr1_reopens_the_log_files(tmp_path: Path) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    command = [sys.executable, "-m", "corral", "-w", "1", "-b", "127.0.0.1:0"]
    command += ["--access-logfile", str(access), "--error-logfile", str(errors), APP]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        assert wait_until(lambda: errors.exists() and "Booted worker" in errors.read_text(), 15)
        port = int(errors.read_text().split("Listening at http://127.0.0.1:")[1].split()[0])
        get(port)
        # The line is written just after the response goes out.
        assert wait_until(lambda: "GET /pid" in access.read_text(), 5)
        access.rename(tmp_path / "access.log.1")
        errors.rename(tmp_path / "error.log.1")
        os.kill(process.pid, signal.SIGUSR1)
        assert wait_until(lambda: errors.exists() and access.exists(), 5)
        get(port)
        assert wait_until(lambda: '"GET /pid HTTP/1.1" 200' in access.read_text(), 5)
        assert "GET /pid" in (tmp_path / "access.log.1").read_text()
        assert "Received USR1" in (tmp_path / "error.log.1").read_text()
    finally:
        process.terminate()
        process.wait(15)
    assert "Master stopped" in errors.read_text()


def test_preload_imports_the_app_once_in_the_master(tmp_path: Path) -> None:
    marker = tmp_path / "imports"
    module = tmp_path / "counted_app.py"
    module.write_text(
        "import os\n"
        f"with open({str(marker)!r}, 'a') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n"
        "from tests.apps.workers_app import app\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    with start(["-w", "3", "--preload"], 3, app="counted_app:app", env=env) as server:
        assert marker.read_text().split() == [str(server.process.pid)]
        get(server.port)
    with start(["-w", "3"], 3, app="counted_app:app", env=env) as server:
        importers = set(marker.read_text().split()[1:])
        assert importers == {str(pid) for pid in workers_of(server.process.pid)}


@pytest.mark.skipif(os.getuid() != 0, reason="changing user needs root")
def test_workers_run_as_the_user_and_group_asked_for() -> None:
    nobody = pwd.getpwnam("nobody")
    with start(["-w", "1", "--user", "nobody", "--group", str(nobody.pw_gid)], 1) as server:
        (worker,) = workers_of(server.process.pid)
        status = Path(f"/proc/{worker}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        gid_line = next(line for line in status.splitlines() if line.startswith("Gid:"))
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
        assert gid_line.split()[1:] == [str(nobody.pw_gid)] * 4
        get(server.port)


def test_unix_socket_gets_the_umask_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "corral.sock"
    command = [
        sys.executable,
        "-m",
        "corral",
        "-w",
        "1",
        "-b",
        f"unix:{path}",
        "--umask",
        "0o117",
        APP,
    ]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(path.exists, 15)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert wait_until(lambda: len(workers_of(process.pid)) == 1, 15)
        assert wait_until(lambda: _unix_get(path).startswith(b"HTTP/1.1 200 "), 10)
    finally:
        process.terminate()
        process.wait(15)


def _unix_get(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        try:
            client.connect(str(path))
            client.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return client.recv(4096)
        except OSError:
            return b""


def test_systemd_socket_activation_serves_on_the_passed_socket() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # systemd sets LISTEN_PID to the pid it execs; a wrapper that execs keeps its pid.
    wrapper = (
        "import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); "
        "os.environ['LISTEN_FDS'] = '1'; os.dup2(int(sys.argv[1]), 3); "
        "os.execv(sys.executable, [sys.executable, '-m', 'corral', '-w', '1', "
        f"'-b', '127.0.0.1:1', {APP!r}])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", wrapper, str(listener.fileno())],
        cwd=ROOT,
        pass_fds=(listener.fileno(),),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    listener.close()
    try:
        assert wait_until(lambda: len(workers_of(process.pid)) == 1, 15)
        assert wait_until(lambda: _answers(port), 10)
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0]
    assert f"Listening at http://127.0.0.1:{port}" in output


def _answers(port: int) -> bool:
    try:
        get(port, timeout=2)
        return True
    except OSError:
        return False


def test_reuse_port_lets_a_second_server_bind_the_same_port() -> None:
    options = ["-w", "1", "--reuse-port"]
    with start(options, 1) as first:
        # The second is told the port the first was given.
        command = [sys.executable, "-m", "corral", *options]
        command += ["-b", f"127.0.0.1:{first.port}", APP]
        with start([], 1, command=command) as second:
            assert second.port == first.port
            assert second.process.poll() is None and first.process.poll() is None
            assert _answers(first.port)


def test_a_pid_file_that_cannot_be_written_stops_the_master(tmp_path: Path) -> None:
    pidfile = tmp_path / "no-such-directory" / "corral.pid"
    result = run_to_exit("-w", "1", "-p", str(pidfile), APP)
    assert result.returncode == 1
    assert "cannot write the pid file" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_server_hook_runs_with_gunicorn_arguments(tmp_path: Path) -> None:
    record = tmp_path / "hooks.log"
    names = [
        "on_starting", "on_reload", "when_ready", "pre_fork", "post_fork",
        "post_worker_init", "worker_int", "worker_abort", "pre_exec", "child_exit",
        "worker_exit", "on_exit",
    ]  # fmt: skip
    lines = [
        "import os",
        "def _note(name, *arguments):",
        f"    with open({str(record)!r}, 'a') as log:",
        "        log.write(name + ' ' + ' '.join(type(a).__name__ for a in arguments) + '\\n')",
    ]
    for name in names:
        lines += [f"def {name}(*arguments):", f"    _note({name!r}, *arguments)"]
    lines += [
        "def nworkers_changed(server, new, old):",
        "    _note('nworkers_changed', server, new, old)",
        "def pre_request(worker, req):",
        "    _note('pre_request', worker, req.method, req.path, req.version)",
        "def post_request(worker, req, environ, resp):",
        "    _note('post_request', worker, req, environ, resp.status)",
    ]
    config = tmp_path / "hooks.conf.py"
    config.write_text("\n".join(lines) + "\n")
    server = start(["-c", str(config), "-w", "1", "--timeout", "2"], 1)
    try:
        master = server.process.pid
        get(server.port)
        os.kill(master, signal.SIGTTIN)
        assert wait_until(lambda: server.log.count("Booted worker") >= 2, 10)
        os.kill(master, signal.SIGHUP)
        assert wait_until(lambda: "Reload complete" in server.log, 10), server.log
        with pytest.raises(OSError):
            get(server.port, "/hang")
        assert wait_until(lambda: "killed after --timeout" in server.log, 10)
        # worker_int runs in a booted worker: wait for the aborted one's replacement.
        assert wait_until(
            lambda: "Booted worker" in server.log.split("killed after --timeout", 1)[1], 10
        ), server.log
    finally:
        assert server.stop(signal.SIGINT) == 0
    log = record.read_text()
    assert "on_starting Master\n" in log
    assert "when_ready Master\n" in log
    assert "pre_fork Master Worker\n" in log
    assert "post_fork Master Worker\n" in log
    assert "post_worker_init Worker\n" in log
    assert "pre_request Worker str str tuple\n" in log
    assert "post_request Worker HookRequest dict str\n" in log
    assert "nworkers_changed Master int int\n" in log
    assert "on_reload Master\n" in log
    assert "worker_abort Worker\n" in log
    assert "child_exit Master Worker\n" in log
    assert "worker_int Worker\n" in log
    assert "worker_exit Master Worker\n" in log
    assert log.endswith("on_exit Master\n")


def test_a_worker_that_does_not_boot_within_the_timeout_stops_the_master(
    tmp_path: Path,
) -> None:
    (tmp_path / "hanging_app.py").write_text("import time\ntime.sleep(100)\n")
    started = time.monotonic()
    result = run_to_exit("-w", "1", "-t", "2", "hanging_app:app", modules=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "did not boot within --timeout 2 s" in result.stderr
    assert time.monotonic() - started < 6


def test_a_new_master_that_fails_gives_the_pid_file_back(tmp_path: Path) -> None:
    pidfile, marker = tmp_path / "corral.pid", tmp_path / "pre_exec"
    config = tmp_path / "corral.conf.py"
    config.write_text(f"def pre_exec(server):\n    open({str(marker)!r}, 'w').close()\n")
    with start(["-w", "1", "-p", str(pidfile), "-c", str(config)], 1) as server:
        # The new master runs the same command, so reads this file, and stops at once.
        config.write_text("workers = 'many'\n")
        os.kill(server.process.pid, signal.SIGUSR2)
        assert wait_until(lambda: "The new master" in server.log, 10), server.log
        assert marker.exists()
        assert wait_until(lambda: pidfile.exists(), 5)
        assert pidfile.read_text().strip() == str(server.process.pid)
        assert not (tmp_path / "corral.pid.oldbin").exists()
        get(server.port)


def test_process_titles_name_the_app_or_the_name_given() -> None:
    def title(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()

    with start(["-w", "1"], 1) as server:
        (worker,) = workers_of(server.process.pid)
        assert title(server.process.pid) == f"corral: master [{APP}]"
        assert title(worker) == f"corral: worker [{APP}]"
    with start(["-w", "1", "-n", "shop"], 1) as server:
        assert title(server.process.pid) == "corral: master [shop]"


def _get_as(user: pwd.struct_passwd, path: Path) -> bytes:
    """`_unix_get` from a process running as `user` (forked: the interpreter may be
    where `user` cannot read it)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.write(write_end, _unix_get(path)[:12])
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as answer:
            return answer.read()
    finally:
        os.waitpid(pid, 0)


@pytest.mark.skipif(os.getuid() != 0, reason="changing user needs root")
@pytest.mark.parametrize("model", [["-w", "1"], ["--threads", "2"]], ids=["workers", "single"])
def test_unix_socket_belongs_to_the_user_asked_for(model: list[str]) -> None:
    # As gunicorn does: a proxy running as --user can connect whatever the umask (here
    # the owner's read and write only).
    nobody = pwd.getpwnam("nobody")
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o755)
    path = directory / "corral.sock"
    command = [
        sys.executable, "-m", "corral", *model, "-b", f"unix:{path}",
        "--umask", "0o177", "--user", "nobody", APP,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: _unix_get(path).startswith(b"HTTP/1.1 200 "), 15)
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert _get_as(nobody, path) == b"HTTP/1.1 200"
    finally:
        process.terminate()
        process.wait(15)
        shutil.rmtree(directory, ignore_errors=True)
