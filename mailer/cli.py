"""The `mailer` command: the Flask CLI of this app (db, run, import-films, worker, ...)."""

from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup

from . import create_app
from .backends import SenderMisconfigured
from .config import ConfigError

# A setup mistake ends a command with this status and one line on stderr.
SETUP_ERROR_STATUS = 2


class MailerGroup(FlaskGroup):
    """A FlaskGroup whose commands are known without building the app.

    FlaskGroup lists the app's own commands by building the app, so a setup mistake would hide
    them (and print a traceback) even from `mailer --help`. Here the app is built only when a
    command runs, and a setup mistake is reported then.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command: ours, Flask's and the installed plugins' (`db`)."""
        self._load_plugin_commands()
        return sorted(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command by name; it builds the app itself (with_appcontext) when it runs."""
        self._load_plugin_commands()
        return self.commands.get(cmd_name)


def commands() -> list[click.Command]:
    """The commands the features and extensions register on the app, without building it."""
    from flask_migrate.cli import db as db_command
    from flask_smorest.spec import openapi_cli

    from .admin.auth import create_admin_command, set_admin_password_command
    from .api_tokens import api_token_cli
    from .bounce_intake import bounce_server_command, bounces_cli
    from .embed_forms import embed_form_command
    from .films import import_films_command
    from .scheduler import deliver_command, worker_command
    from .subscriptions import purge_unconfirmed_command

    return [
        db_command,
        openapi_cli,
        create_admin_command,
        set_admin_password_command,
        api_token_cli,
        embed_form_command,
        import_films_command,
        worker_command,
        deliver_command,
        purge_unconfirmed_command,
        bounce_server_command,
        bounces_cli,
    ]


def main() -> None:
    """Entry point of the `mailer` console script."""
    cli = MailerGroup(
        create_app=create_app,
        help="The documentary newsletter service. Set MAILER_* variables to configure it.",
    )
    for command in commands():
        cli.add_command(command)
    try:
        cli.main(prog_name="mailer")
    except (ConfigError, SenderMisconfigured) as exc:
        click.echo(f"mailer: {exc}", err=True)
        sys.exit(SETUP_ERROR_STATUS)
