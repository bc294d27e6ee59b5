"""Admin digest composer: list, create, edit and duplicate digests."""

from __future__ import annotations

from dataclasses import dataclass

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..digests import (
    EDITABLE_STATUSES,
    DigestInvalid,
    DigestLocked,
    create_digest,
    duplicate_digest,
    list_digests,
    update_digest,
    validate_digest,
)
from ..extensions import db
from ..models import Digest, Film, utcnow
from .base import bp


@dataclass(frozen=True)
class Pick:
    """One catalogue film as the composer form shows it."""

    film: Film
    included: bool
    position: str
    note: str


def _catalogue() -> list[Film]:
    """Every film, in the order the picker lists them."""
    return list(
        db.session.scalars(select(Film).order_by(Film.release_date.desc().nulls_last(), Film.title))
    )


def films_from_form(catalogue: list[Film]) -> list[tuple[int, str]]:
    """The ticked films as (id, note), ordered by their position box, then catalogue order."""
    chosen: list[tuple[int, int, int, str]] = []
    for index, film in enumerate(catalogue):
        if request.form.get(f"include-{film.id}"):
            raw = request.form.get(f"position-{film.id}", "").strip()
            position = int(raw) if raw.isdigit() else 10_000 + index
            chosen.append((position, index, film.id, request.form.get(f"note-{film.id}", "")))
    return [(film_id, note) for _, _, film_id, note in sorted(chosen)]


def _picks(catalogue: list[Film], digest: Digest | None) -> list[Pick]:
    """The picker rows: posted choices after an error, else the digest's films, else none."""
    if request.method == "POST":
        return [
            Pick(
                film,
                bool(request.form.get(f"include-{film.id}")),
                request.form.get(f"position-{film.id}", ""),
                request.form.get(f"note-{film.id}", ""),
            )
            for film in catalogue
        ]
    featured = {item.film_id: item for item in digest.films} if digest else {}
    picks = [
        Pick(film, True, str(featured[film.id].position + 1), featured[film.id].note)
        if film.id in featured
        else Pick(film, False, "", "")
        for film in catalogue
    ]
    # Featured films first, in their digest order, so the form reads like the mail.
    return sorted(picks, key=lambda p: (not p.included, int(p.position) if p.included else 0))


def _values(digest: Digest | None) -> dict[str, str]:
    """The text fields: as posted after an error, else as stored."""
    if request.method == "POST":
        return {k: request.form.get(k, "") for k in ("subject", "preheader", "intro_markdown")}
    if digest is None:
        return {"subject": "", "preheader": "", "intro_markdown": ""}
    return {
        "subject": digest.subject,
        "preheader": digest.preheader,
        "intro_markdown": digest.intro_markdown,
    }


def _render(digest: Digest | None, errors: dict[str, str], status: int = 200) -> tuple[str, int]:
    """The composer page."""
    catalogue = _catalogue()
    page = render_template(
        "admin/digest_form.html",
        digest=digest,
        values=_values(digest),
        picks=_picks(catalogue, digest),
        errors=errors,
        editable=digest is None or digest.status in EDITABLE_STATUSES,
    )
    return page, status


def stored_problems(digest: Digest) -> dict[str, str]:
    """The fields whose stored content today's rules refuse (saved before a rule existed)."""
    films = [(item.film_id, item.note) for item in digest.films]
    try:
        validate_digest(digest.subject, digest.preheader, digest.intro_markdown, films)
    except DigestInvalid as exc:
        return exc.errors
    return {}


@bp.get("/digests")
def digests() -> str:
    """Every digest with its status, newest first."""
    return render_template("admin/digests.html", digests=list_digests())


def _content_fields() -> tuple[str, str, str, list[tuple[int, str]]]:
    """The posted subject, preheader, intro and chosen films, in the order the domain takes them."""
    form = request.form
    return (
        form.get("subject", ""),
        form.get("preheader", ""),
        form.get("intro_markdown", ""),
        films_from_form(_catalogue()),
    )


@bp.route("/digests/new", methods=["GET", "POST"])
def digest_new() -> Response | tuple[str, int]:
    """Compose a new draft."""
    if request.method == "POST":
        try:
            digest = create_digest(*_content_fields(), utcnow())
        except DigestInvalid as exc:
            db.session.rollback()
            return _render(None, exc.errors, 400)
        db.session.commit()
        flash("Draft saved.")
        return redirect(url_for("admin.digest_edit", digest_id=digest.id))
    return _render(None, {})


@bp.route("/digests/<int:digest_id>", methods=["GET", "POST"])
def digest_edit(digest_id: int) -> Response | tuple[str, int]:
    """A digest's page: its content, and (as they arrive) preview, test send and delivery."""
    digest = db.get_or_404(Digest, digest_id)
    if request.method == "POST":
        try:
            update_digest(digest, *_content_fields(), utcnow())
        except DigestInvalid as exc:
            db.session.rollback()
            return _render(db.get_or_404(Digest, digest_id), exc.errors, 400)
        except DigestLocked as exc:
            db.session.rollback()
            return _render(db.get_or_404(Digest, digest_id), {"status": str(exc)}, 409)
        db.session.commit()
        flash("Digest saved.")
        return redirect(url_for("admin.digest_edit", digest_id=digest.id))
    return _render(digest, stored_problems(digest))


@bp.post("/digests/<int:digest_id>/duplicate")
def digest_duplicate(digest_id: int) -> Response:
    """Copy a digest into a new draft."""
    copy = duplicate_digest(db.get_or_404(Digest, digest_id), utcnow())
    db.session.commit()
    flash("This is a new draft copied from the earlier digest.")
    return redirect(url_for("admin.digest_edit", digest_id=copy.id))
