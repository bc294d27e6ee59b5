"""The public archive of sent digests at /digests: what subscribers got, minus anything personal."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, render_template
from sqlalchemy import select

from .config import mail_settings
from .emails import archive_html
from .extensions import db
from .models import Digest, DigestStatus, utcnow

bp = Blueprint("archive", __name__)

ARCHIVE_SHOWN = 500


def sent_digests(limit: int = ARCHIVE_SHOWN) -> list[Digest]:
    """The digests that went out, newest first."""
    return list(
        db.session.scalars(
            select(Digest)
            .where(Digest.status == DigestStatus.SENT)
            .order_by(Digest.finished_at.desc().nulls_last(), Digest.id.desc())
            .limit(limit)
        )
    )


@bp.get("/digests")
def index() -> str:
    """Every sent digest, newest first."""
    return render_template("archive/index.html", digests=sent_digests())


@bp.get("/digests/<int:digest_id>")
def digest(digest_id: int) -> str:
    """One sent digest as its web version: early-access films appear as coming soon."""
    found = db.session.get(Digest, digest_id)
    if found is None or found.status != DigestStatus.SENT:
        abort(404)
    body = archive_html(found, utcnow(), mail_settings())
    return render_template("archive/digest.html", digest=found, body=body)


def init_app(app: Flask) -> None:
    """Register the archive pages."""
    app.register_blueprint(bp)
