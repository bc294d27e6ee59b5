"""The `mailer` command: the Flask CLI of this app (db, run, import-films, worker, ...)."""

from flask.cli import FlaskGroup

from . import create_app


def main() -> None:
    """Entry point of the `mailer` console script."""
    cli = FlaskGroup(
        create_app=create_app,
        help="The documentary newsletter service. Set MAILER_* variables to configure it.",
    )
    cli.main(prog_name="mailer")
