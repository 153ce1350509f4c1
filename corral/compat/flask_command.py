"""`flask --app hello corral --threads 8`: the Flask CLI's app, served by corral.

It behaves like `flask run` where the two meet: it listens on 127.0.0.1:5000 unless
`-h/--host`, `-p/--port` or `-b/--bind` say otherwise, and logs one line per request to
standard error in Werkzeug's layout unless an access log is set. Every other option is
corral's; corral's `-p` (PID file) is spelled `--pid` here, and the app is loaded only
in the process that serves it, so `--reload` waits for a broken app to be fixed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import flask
from flask.cli import NoAppException, ScriptInfo

from corral.serving.access_log import STDERR, WERKZEUG_FORMAT

FLASK_RUN_HOST = "127.0.0.1"
FLASK_RUN_PORT = 5000

# `flask run`'s behaviour, below any config file, environment variable or option.
FLASK_DEFAULTS = {
    "bind": [f"{FLASK_RUN_HOST}:{FLASK_RUN_PORT}"],
    "access_logfile": STDERR,
    "access_logformat": WERKZEUG_FORMAT,
}

_DESCRIPTION = (
    "Serve the Flask app with corral, as flask run does: on 127.0.0.1:5000 unless "
    "-h/--host, -p/--port or -b/--bind say otherwise, each request logged to standard "
    "error unless --access-logfile says otherwise. The other options are corral's; its "
    "-p (PID file) is spelled --pid here."
)
_HOST_AND_PORT = {("-h", "--host"): "HOST", ("-p", "--port"): "PORT"}
# click's, Flask's and corral's frames say only how the app was reached.
_LOADERS = tuple(
    os.path.dirname(os.path.abspath(module.__file__ or "")) + os.sep for module in (click, flask)
)


def make_help() -> str:
    """--help: corral's, generated from the same table, as this command takes it."""
    from corral.cli import make_parser

    parser = make_parser(
        prog="flask [--app APP] corral",
        usage="%(prog)s [options]",
        description=_DESCRIPTION,
        app_argument=False,
        help_flags=("--help",),
        left_out=("-p",),
        defaults=FLASK_DEFAULTS,
    )
    for flags, metavar in _HOST_AND_PORT.items():
        what = "interface" if metavar == "HOST" else "port"
        parser.add_argument(*flags, metavar=metavar, help=f"The {what} to bind to, as flask run's.")
    return parser.format_help()


class _FlaskCorralCommand(click.Command):
    """Usage errors in the options click parses (-h, -p) as one line, as corral's."""

    def parse_args(self, context: click.Context, args: list[str]) -> list[str]:
        from corral.process.exit_codes import USAGE_ERROR

        try:
            return super().parse_args(context, args)
        except click.BadOptionUsage as error:
            names = next(
                ("/".join(flags) for flags in _HOST_AND_PORT if error.option_name in flags),
                error.option_name,
            )
            print(f"corral: error: {names} needs a value", file=sys.stderr)
            sys.exit(USAGE_ERROR)


def load_flask_app(info: ScriptInfo) -> Any:
    """The app, as flask run finds it; `AppLoadError` with the app's own frames if it
    cannot be loaded."""
    from corral.app_loading import AppLoadError, raised_by_the_app

    spec = info.app_import_path or "wsgi.py or app.py"
    try:
        return info.load_app()
    except NoAppException as error:
        # Flask tells an ImportError raised inside the app as one long message holding
        # the whole traceback; tell the ImportError itself, as for any other exception.
        cause = error.__context__
        traceback = cause.__traceback__ if isinstance(cause, ImportError) else None
        if cause is not None and traceback is not None and traceback.tb_next is not None:
            raise raised_by_the_app(cause, spec, _LOADERS) from None
        raise AppLoadError(f"cannot load app {spec!r}: {error.format_message()}") from None
    except Exception as error:
        raise raised_by_the_app(error, spec, _LOADERS) from None


@click.command(
    "corral",
    cls=_FlaskCorralCommand,
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
    from corral.process.exit_codes import USAGE_ERROR

    if "--help" in options:
        print(make_help(), end="")
        sys.exit(0)
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
    sys.exit(
        main(
            argv,
            app_loader=lambda: load_flask_app(info),
            exec_argv=command,
            defaults=FLASK_DEFAULTS,
        )
    )
