"""Admin pages for embeddable subscribe forms: create, list, show the snippet, revoke."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..embed_forms import InvalidEmbedForm, create_embed_form, revoke_embed_form, snippet
from ..extensions import db
from ..models import EmbedForm, utcnow
from ..subscribers import CONSENT_TEXT, Topic
from .base import bp


def _forms_page(values: dict[str, object], error: str = "") -> str:
    """The list of forms with the form to add one."""
    forms = db.session.scalars(select(EmbedForm).order_by(EmbedForm.created_at.desc()))
    return render_template(
        "embed/admin_forms.html",
        forms=list(forms),
        values=values,
        error=error,
        all_topics=[t.value for t in Topic],
    )


@bp.get("/embed-forms")
def embed_forms() -> str:
    """Every embeddable form, and a form to add one."""
    values: dict[str, object] = {
        "name": "",
        "origins": "",
        "topics": [t.value for t in Topic],
        "consent_text": CONSENT_TEXT,
    }
    return _forms_page(values)


@bp.post("/embed-forms")
def embed_form_new() -> Response | tuple[str, int]:
    """Create a form from the name, origins (one a line), topics and consent text."""
    values: dict[str, object] = {
        "name": request.form.get("name", ""),
        "origins": request.form.get("origins", ""),
        "topics": request.form.getlist("topics"),
        "consent_text": request.form.get("consent_text", ""),
    }
    try:
        form = create_embed_form(
            str(values["name"]),
            str(values["origins"]).split(),
            request.form.getlist("topics"),
            str(values["consent_text"]),
            utcnow(),
        )
    except InvalidEmbedForm as exc:
        db.session.rollback()
        return _forms_page(values, str(exc)), 400
    db.session.commit()
    flash(f"Form “{form.name}” created. Paste the snippet below into the site's pages.")
    return redirect(url_for("admin.embed_form", form_id=form.id), 303)


@bp.get("/embed-forms/<int:form_id>")
def embed_form(form_id: int) -> str:
    """One form: its origins, topics, consent text and the snippet to paste."""
    form = db.get_or_404(EmbedForm, form_id)
    code = snippet(form, current_app.config["MAILER_BASE_URL"])
    return render_template("embed/admin_form.html", form=form, snippet=code)


@bp.post("/embed-forms/<int:form_id>/revoke")
def embed_form_revoke(form_id: int) -> Response:
    """Stop accepting posts from the form; its snippet stops working at once."""
    form = db.get_or_404(EmbedForm, form_id)
    revoke_embed_form(form, utcnow())
    db.session.commit()
    flash(f"Form “{form.name}” revoked: posts from it are refused from now on.")
    return redirect(url_for("admin.embed_forms"), 303)
