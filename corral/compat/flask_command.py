"""`flask --app hello corral --threads 8`: the Flask CLI's app, served by corral."""

from __future__ import annotations

import sys

import click
from flask.cli import ScriptInfo


@click.command(
    "corral",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def corral_command(context: click.Context, options: tuple[str, ...]) -> None:
    """Serve the app with corral; takes corral's options (corral --help lists them)."""
    from corral.cli import main

    if "--help" in options or "-h" in options:
        sys.exit(main(["--help"]))
    info = context.ensure_object(ScriptInfo)
    # USR2 and --reload start the server again by running this same flask command:
    # sys.orig_argv keeps `-m flask`, which sys.argv turns into the path of __main__.py.
    command = [sys.executable, *sys.orig_argv[1:]]
    sys.exit(main(list(options), app=info.load_app(), exec_argv=command))
