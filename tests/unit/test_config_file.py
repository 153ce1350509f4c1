"""`-c FILE` config files, gunicorn's names, CORRAL_CMD_ARGS and the precedence of all."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from corral.cli import make_parser, parse_config, print_config
from corral.config import SETTINGS_BY_NAME, ConfigError
from corral.config_file import (
    GUNICORN_BY_NAME,
    GUNICORN_SETTINGS,
    gunicorn_markdown,
    read_config_file,
)

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "corral.conf.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_from_gunicorn_page_has_the_generated_table() -> None:
    page = (ROOT / "docs" / "from-gunicorn.md").read_text()
    start = page.index("<!-- generated -->\n") + len("<!-- generated -->\n")
    end = page.index("<!-- end of generated part -->")
    assert page[start:end] == gunicorn_markdown() + "\n", (
        "put the output of `python -m corral.config_file` between the markers "
        "in docs/from-gunicorn.md"
    )


def test_gunicorn_table_names_real_settings_once() -> None:
    assert len(GUNICORN_BY_NAME) == len(GUNICORN_SETTINGS)
    for entry in GUNICORN_SETTINGS:
        if entry.corral is None:
            assert entry.instead, entry.name
        else:
            assert entry.corral in SETTINGS_BY_NAME, entry.name
        # A gunicorn name that is also corral's must mean the same setting.
        if entry.name in SETTINGS_BY_NAME:
            assert entry.corral == entry.name
    hooks = {name for name, setting in SETTINGS_BY_NAME.items() if setting.is_hook}
    assert not hooks & set(GUNICORN_BY_NAME), "hooks keep gunicorn's names; no entry needed"


def test_corral_names_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        bind = "0.0.0.0:9000, unix:/tmp/app.sock"
        workers = 4
        worker_class = "gthread"
        keep_alive = 10
        max_worker_memory = 512
        """,
    )
    _, config = parse_config(["-c", path], {})
    assert config.config == path
    assert config.bind == ["0.0.0.0:9000", "unix:/tmp/app.sock"]
    assert config.workers == 4
    assert config.worker_class == "thread"
    assert config.keep_alive == 10.0
    assert config.max_worker_memory == 512


def test_gunicorn_names_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        bind = ["127.0.0.1:8001", "[::1]:8001"]
        keepalive = 2
        accesslog = "-"
        errorlog = "/var/log/app/error.log"
        loglevel = "WARNING"
        access_log_format = '%(h)s "%(r)s" %(s)s'
        preload_app = True
        pidfile = "/run/app.pid"
        proc_name = "app"
        worker_class = "gunicorn.workers.ggevent.GeventWorker"
        limit_request_field_size = 4096
        """,
    )
    config = read_config_file(path)
    assert config == {
        "bind": ["127.0.0.1:8001", "[::1]:8001"],
        "keep_alive": 2.0,
        "access_logfile": "-",
        "error_logfile": "/var/log/app/error.log",
        "log_level": "warning",
        "access_logformat": '%(h)s "%(r)s" %(s)s',
        "preload": True,
        "pid": "/run/app.pid",
        "proc_name": "app",
        "worker_class": "gevent",
        "limit_request_field_size": 4096,
    }


def test_precedence_file_environment_cmd_args_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "threads = 2\nkeepalive = 3\nbacklog = 64\ntimeout = 10\n")
    environ = {
        "CORRAL_KEEP_ALIVE": "4",
        "CORRAL_BACKLOG": "128",
        "CORRAL_TIMEOUT": "11",
        "CORRAL_CMD_ARGS": "--backlog 256 --timeout=12",
    }
    _, config = parse_config(["-c", path, "--timeout", "13"], environ)
    assert config.threads == 2  # the file over the default
    assert config.keep_alive == 4.0  # CORRAL_* over the file
    assert config.backlog == 256  # CORRAL_CMD_ARGS over CORRAL_*
    assert config.timeout == 13.0  # the command line over everything


def test_which_file_is_read(tmp_path: Path) -> None:
    from_variable = write(tmp_path, "threads = 2\n", "variable.py")
    from_cmd_args = write(tmp_path, "threads = 3\n", "cmd_args.py")
    from_command_line = write(tmp_path, "threads = 4\n", "command_line.py")
    environ = {"CORRAL_CONFIG": from_variable}
    assert parse_config([], environ)[1].threads == 2
    environ["CORRAL_CMD_ARGS"] = f"-c {from_cmd_args}"
    assert parse_config([], environ)[1].threads == 3
    assert parse_config(["--config", from_command_line], environ)[1].threads == 4
    # An empty name reads no file at all.
    assert parse_config(["--config="], environ)[1].threads == 1


def test_no_file_is_read_unless_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "threads = 7\n", "corral.conf.py")
    write(tmp_path, "threads = 7\n", "gunicorn.conf.py")
    monkeypatch.chdir(tmp_path)
    assert parse_config([], {})[1].threads == 1


def test_the_file_is_read_again_on_every_parse(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = 2\n")
    assert parse_config(["-c", path], {})[1].workers == 2
    write(tmp_path, "workers = 3\n")
    assert parse_config(["-c", path], {})[1].workers == 3
    write(tmp_path, "")
    assert parse_config(["-c", path], {})[1].workers == 0


def test_helpers_in_the_file_are_left_alone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        import multiprocessing
        import os.path
        from pathlib import Path

        _base = Path(__file__).parent

        def cpu_count():
            return 3

        class Helper:
            pass

        workers = cpu_count()
        pidfile = os.path.join(str(_base), "app.pid")
        """,
    )
    config = read_config_file(path)
    assert config == {"workers": 3, "pid": str(Path(path).parent / "app.pid")}


def test_none_leaves_a_setting_alone_even_one_corral_lacks(tmp_path: Path) -> None:
    path = write(tmp_path, "pidfile = None\ncertfile = None\nuser = None\nthreads = 2\n")
    assert read_config_file(path) == {"threads": 2}


def test_gunicorn_defaults_of_settings_corral_lacks_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        spew = False
        daemon = False
        tmp_upload_dir = None
        reload_engine = "auto"
        reload_extra_files = []
        forwarder_headers = "SCRIPT_NAME,PATH_INFO"
        header_map = "drop"
        suppress_ragged_eofs = True
        threads = 2
        """,
    )
    assert read_config_file(path) == {"threads": 2}


def test_gunicorn_proxy_settings_are_corrals(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        secure_scheme_headers = {"X-Forwarded-Proto": "https", "X-SCHEME": "secure"}
        forwarded_allow_ips = "127.0.0.1,10.0.0.0/8"
        proxy_protocol = True
        proxy_allow_ips = "*"
        """,
    )
    assert read_config_file(path) == {
        "secure_scheme_headers": {"X-FORWARDED-PROTO": "https", "X-SCHEME": "secure"},
        "forwarded_allow_ips": ["127.0.0.1", "10.0.0.0/8"],
        "proxy_protocol": True,
        "proxy_allow_ips": ["*"],
    }


def test_every_unsupported_setting_accepts_its_gunicorn_default(tmp_path: Path) -> None:
    for entry in GUNICORN_SETTINGS:
        if entry.corral is None:
            path = write(tmp_path, f"{entry.name} = {entry.default!r}\n")
            assert read_config_file(path) == {}, entry.name


def test_raw_env_wsgi_app_and_ssl_context_are_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        raw_env = ["SPAM=eggs", "EMPTY=", "URL=a=b"]
        wsgi_app = "tests.apps.environment:app"

        def ssl_context(conf, default_ssl_context_factory):
            return default_ssl_context_factory()
        """,
    )
    arguments, config = parse_config(["-c", path, "-e", "ONE=1", "--env", "TWO=2"], {})
    assert config.raw_env == ["ONE=1", "TWO=2"]  # the command line replaces the file's list
    assert config.wsgi_app == "tests.apps.environment:app"
    assert config.ssl_context.__name__ == "ssl_context"
    assert not hasattr(arguments, "app")
    _, config = parse_config(["-c", path], {"CORRAL_RAW_ENV": "A=1"})
    assert config.raw_env == ["A=1"]
    assert parse_config(["-c", path], {})[1].raw_env == ["SPAM=eggs", "EMPTY=", "URL=a=b"]


def test_gunicorn_cmd_args_rank_below_corral_cmd_args(tmp_path: Path) -> None:
    path = write(tmp_path, "threads = 2\nbacklog = 64\n")
    environ = {
        "GUNICORN_CMD_ARGS": f"-c {path} --backlog 128 --timeout 11 -e A=1",
        "CORRAL_CMD_ARGS": "--timeout 12",
    }
    _, config = parse_config([], environ)
    assert config.threads == 2  # the file GUNICORN_CMD_ARGS names is read
    assert config.backlog == 128
    assert config.timeout == 12.0
    assert config.raw_env == ["A=1"]
    assert parse_config(["--timeout", "13"], environ)[1].timeout == 13.0


def test_hooks_are_functions_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """
        def post_fork(server, worker):
            pass

        def when_ready(server):
            pass

        on_exit = None
        """,
    )
    _, config = parse_config(["-c", path], {})
    assert config.post_fork.__name__ == "post_fork"
    assert config.when_ready.__name__ == "when_ready"
    assert config.on_exit is None
    print_config(config)
    shown = capsys.readouterr().out
    assert re.search(r"^post_fork\s+= <function post_fork>$", shown, re.M)
    assert re.search(r"^on_exit\s+= None$", shown, re.M)
    assert re.search(rf"^config\s+= {re.escape(repr(path))}$", shown, re.M)


@pytest.mark.parametrize("parameters", ["worker, req", "worker, req, environ"])
def test_post_request_takes_gunicorn_shorter_forms(tmp_path: Path, parameters: str) -> None:
    path = write(
        tmp_path,
        f"""
        _calls = []

        def post_request({parameters}):
            _calls.append(({parameters}))
        """,
    )
    hook = read_config_file(path)["post_request"]
    hook("worker", "req", {"PATH_INFO": "/"}, "resp")
    expected = ("worker", "req", {"PATH_INFO": "/"})[: parameters.count(",") + 1]
    assert hook.__wrapped__.__globals__["_calls"] == [expected]
    assert hook.__name__ == "post_request"


def test_a_hook_must_be_callable(tmp_path: Path) -> None:
    path = write(tmp_path, "post_fork = 'not a function'\n")
    with pytest.raises(ConfigError, match=r"corral.conf.py: post_fork: .* is not callable"):
        read_config_file(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("daemon = True\n", r"daemon is a gunicorn setting corral does not support: run"),
        ("certfile = 'x.pem'\n", r"certfile is a gunicorn setting .* terminate TLS in a proxy"),
        ("raw_env = ['A=1', 'B']\n", r"corral.conf.py: raw_env: 'B' is not NAME=value$"),
        ("spew = True\n", r"spew is a gunicorn setting corral does not support: trace"),
        ("header_map = 'dangerous'\n", r"header_map is a gunicorn setting .* strictly"),
        (
            "forwarded_allow_ips = '10.0.0.1/8'\n",
            r"corral.conf.py: forwarded_allow_ips: '10.0.0.1/8' is not an IP address",
        ),
        ("secure_scheme_headers = ['X']\n", r"secure_scheme_headers: \['X'\] is not a dict"),
        ("forwarder_headers = 'X'\n", r"forwarder_headers is a gunicorn setting .* '_'"),
        ("worker_tmp_dir = '/dev/shm'\n", r"worker_tmp_dir is a gunicorn setting"),
        ("ssl_context = 'tls.pem'\n", r"ssl_context: 'tls.pem' is not callable"),
        ("wokers = 2\n", r"unknown setting 'wokers' \(did you mean 'workers'\?\)"),
        ("keep_alvie = 2\n", r"unknown setting 'keep_alvie' \(did you mean 'keep_alive'\?\)"),
        ("LOG_DIR = '/var/log'\n", r"unknown setting 'LOG_DIR' \(a helper's name must start"),
        ("keepalive = 2\nkeep_alive = 3\n", r"keepalive and keep_alive both set keep_alive"),
        ("workers = 'many'\n", r"corral.conf.py: workers: 'many' is not a whole number"),
        ("loglevel = 'loud'\n", r"corral.conf.py: loglevel: must be one of"),
        ("config = 'other.py'\n", r"config: a config file cannot name another one"),
        ("import os\nx = os.nope\n", r"corral.conf.py, line 2: AttributeError: .*'nope'"),
        ("def f():\n    raise ValueError('a\\nb')\nf()\n", r", line 2: ValueError: a$"),
        ("workers = (\n", r"corral.conf.py, line 1: SyntaxError: "),
    ],
)
def test_bad_files_give_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(["-c", path], {})
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.py")
    with pytest.raises(ConfigError, match=rf"cannot read config file {missing}: No such file"):
        parse_config(["-c", missing], {})


def test_file_values_still_meet_the_combination_rules(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = 2\nprocess_per_request = 2\n")
    with pytest.raises(ConfigError, match="cannot run inside --workers"):
        parse_config(["-c", path], {})


def test_cmd_args_are_options_like_the_command_line() -> None:
    environ = {"CORRAL_CMD_ARGS": "-b '127.0.0.1:9001' --bind=[::1]:9001 -w 3 --preload app:x"}
    arguments, config = parse_config([], environ)
    assert config.bind == ["127.0.0.1:9001", "[::1]:9001"]
    assert config.workers == 3
    assert config.preload is True
    assert arguments.app == "app:x"
    # The command line replaces a list from CORRAL_CMD_ARGS, it does not extend it.
    arguments, config = parse_config(["-b", "127.0.0.1:9002", "other:y"], environ)
    assert config.bind == ["127.0.0.1:9002"]
    assert arguments.app == "other:y"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CORRAL_CMD_ARGS": "--bind '127.0.0.1"}, r"^CORRAL_CMD_ARGS: No closing quotation$"),
        ({"CORRAL_CMD_ARGS": "--threads"}, r"^CORRAL_CMD_ARGS: argument --threads: expected"),
        ({"CORRAL_CMD_ARGS": "--daemon"}, r"^CORRAL_CMD_ARGS: --daemon is a gunicorn setting"),
        ({"CORRAL_CMD_ARGS": "--threads 0"}, r"^--threads: must be at least 1$"),
        ({"GUNICORN_CMD_ARGS": "--daemon"}, r"^GUNICORN_CMD_ARGS: --daemon is a gunicorn"),
        (
            {"GUNICORN_CMD_ARGS": "--wokers 2"},
            r"^GUNICORN_CMD_ARGS: unknown option --wokers; did you mean --workers\?$",
        ),
        (
            {"CORRAL_CMD_ARGS": "--keep-alvie=2"},
            r"^CORRAL_CMD_ARGS: unknown option --keep-alvie; did you mean --keep-alive\?$",
        ),
        ({"GUNICORN_CMD_ARGS": "-b 'x"}, r"^GUNICORN_CMD_ARGS: No closing quotation$"),
    ],
)
def test_bad_cmd_args_say_so(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config([], environ)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--daemon", "app:x"], r"^--daemon is a gunicorn setting corral does not support: "),
        (["--certfile=a.pem", "app:x"], r"^--certfile is a gunicorn setting .* TLS"),
        (["-e", "A", "app:x"], r"^--env: 'A' is not NAME=value$"),
        (["--env==1", "app:x"], r"^--env: '=1' is not NAME=value$"),
        (["--no-such-option", "app:x"], r"^unknown option --no-such-option \(corral --help"),
        (["--wokers", "2", "app:x"], r"^unknown option --wokers; did you mean --workers\?$"),
        (["app:x", "--wokers=2"], r"^unknown option --wokers; did you mean --workers\?$"),
        (["--treads", "2", "app:x"], r"^unknown option --treads; did you mean --threads\?$"),
        (["-W", "2", "app:x"], r"^unknown option -W; did you mean -w\?$"),
        # gunicorn's spelling is accepted, but the one suggested is corral's.
        (
            ["--limit-request-fieldsize", "9", "app:x"],
            r"^unknown option --limit-request-fieldsize; did you mean --limit-request-field-size",
        ),
        (["--max", "2", "app:x"], r"^ambiguous option: --max could match --max-threads, "),
        (["app:x", "extra"], r"^unexpected argument 'extra': give one APP$"),
        (["--workers", "many", "app:x"], r"^--workers: 'many' is not a whole number$"),
    ],
)
def test_command_line_errors_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(argv, {})
    assert "\n" not in str(caught.value)


def test_unique_prefixes_of_options_still_work() -> None:
    _, config = parse_config(["--keep", "3", "--max-worker", "64", "--limit-request-li=99"], {})
    assert (config.keep_alive, config.max_worker_memory, config.limit_request_line) == (3, 64, 99)


def test_help_notes_a_default_only_where_it_says_something() -> None:
    help_text = " ".join(make_parser().format_help().split())
    for empty in ("None", "''", "[]"):
        assert f"(default: {empty})" not in help_text
    # Help that says what happens by default needs no note contradicting it.
    for option in ("--umask MASK", "--name NAME"):
        line = help_text.split(option)[-1].split(" -", 1)[0]
        assert "default:" in line.lower() and "(default:" not in line, line
    assert "(default: 127.0.0.1:8000)" in help_text
    assert "(default: 30)" in help_text and "(default: 1000)" in help_text


def test_gunicorn_spelling_of_a_flag_is_accepted_but_not_shown() -> None:
    _, config = parse_config(["--limit-request-field_size", "4096"], {})
    assert config.limit_request_field_size == 4096
    assert "field_size" not in make_parser().format_help()


def test_version_has_gunicorn_short_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(["-v"], {})
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("corral ")
