"""`flask --app hello corral --threads 8`: the Flask CLI's app, served by corral.

It behaves like `flask run` where the two meet: it listens on 127.0.0.1:5000 unless
`-h/--host`, `-p/--port` or `-b/--bind` say otherwise, and logs one line per request to
standard error in Werkzeug's layout unless an access log is set. Every other option is
corral's (`corral --help`); corral's `-p` (PID file) is spelled `--pid` here.
"""

from __future__ import annotations

import sys

import click
from flask.cli import ScriptInfo

from corral.access_log import STDERR, WERKZEUG_FORMAT

FLASK_RUN_HOST = "127.0.0.1"
FLASK_RUN_PORT = 5000

# `flask run`'s behaviour, below any config file, environment variable or option.
FLASK_DEFAULTS = {
    "bind": [f"{FLASK_RUN_HOST}:{FLASK_RUN_PORT}"],
    "access_logfile": STDERR,
    "access_logformat": WERKZEUG_FORMAT,
}

_USAGE = """\
Usage: flask [--app APP] corral [-h HOST] [-p PORT] [corral's options]

Serves the Flask app with corral. -h/--host and -p/--port are flask run's (default
127.0.0.1:5000); -b/--bind ADDRESS listens there instead, or as well. Each request is
logged to standard error unless --access-logfile says otherwise. corral's -p is spelled
--pid here.

corral's options:
"""


@click.command(
    "corral",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.option("-h", "--host", default=None, help="The interface to bind to.")
@click.option("-p", "--port", default=None, help="The port to bind to.")
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def corral_command(
    context: click.Context, host: str | None, port: str | None, options: tuple[str, ...]
) -> None:
    """Serve the app with corral, like flask run; takes corral's options too."""
    from corral.cli import main
    from corral.exit_codes import USAGE_ERROR

    if "--help" in options:
        print(_USAGE)
        sys.exit(main(["--help"]))
    argv = list(options)
    if host is not None or port is not None:
        if port is not None and not (port.isdigit() and int(port) <= 65535):
            print(f"corral: error: --port: {port!r} is not a port number", file=sys.stderr)
            sys.exit(USAGE_ERROR)
        host = FLASK_RUN_HOST if host is None else host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        argv = ["--bind", f"{host}:{FLASK_RUN_PORT if port is None else port}", *argv]
    info = context.ensure_object(ScriptInfo)
    # USR2 and --reload start the server again by running this same flask command:
    # sys.orig_argv keeps `-m flask`, which sys.argv turns into the path of __main__.py.
    command = [sys.executable, *sys.orig_argv[1:]]
    sys.exit(main(argv, app=info.load_app(), exec_argv=command, defaults=FLASK_DEFAULTS))
