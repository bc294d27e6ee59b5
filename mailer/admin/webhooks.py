"""Webhook endpoints: register a URL for events (its secret shown once), watch its deliveries."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..extensions import db
from ..models import WebhookEndpoint, utcnow
from ..webhooks import (
    EndpointDisabled,
    InvalidEndpoint,
    WebhookEvent,
    create_endpoint,
    delete_endpoint,
    list_endpoints,
    recent_deliveries,
    send_test_event,
    set_enabled,
)
from .base import bp


def _page(
    errors: dict[str, str], form: dict[str, object], secret: str | None, status: int
) -> tuple[str, int]:
    """The endpoints page, with the register form's errors and a new secret to show once."""
    page = render_template(
        "admin/webhooks.html",
        endpoints=list_endpoints(),
        events=list(WebhookEvent),
        errors=errors,
        form=form,
        secret=secret,
    )
    return page, status


@bp.get("/webhooks")
def webhooks() -> tuple[str, int]:
    """Every registered endpoint, and the form to register one."""
    return _page({}, {"url": "", "description": "", "events": []}, None, 200)


@bp.post("/webhooks")
def webhook_create() -> tuple[str, int]:
    """Register an endpoint and show its signing secret this once."""
    form: dict[str, object] = {
        "url": request.form.get("url", ""),
        "description": request.form.get("description", ""),
        "events": request.form.getlist("events"),
    }
    try:
        endpoint = create_endpoint(
            str(form["url"]), request.form.getlist("events"), str(form["description"]), utcnow()
        )
    except InvalidEndpoint as exc:
        db.session.rollback()
        return _page(exc.errors, form, None, 400)
    secret = endpoint.secret
    db.session.commit()
    flash(f"Endpoint {endpoint.url} registered. Copy its secret now: it will not be shown again.")
    return _page({}, {"url": "", "description": "", "events": []}, secret, 201)


@bp.get("/webhooks/<int:endpoint_id>")
def webhook(endpoint_id: int) -> str:
    """An endpoint and its latest deliveries, each with its last answer."""
    endpoint = db.get_or_404(WebhookEndpoint, endpoint_id)
    return render_template(
        "admin/webhook.html", endpoint=endpoint, deliveries=recent_deliveries(endpoint.id)
    )


@bp.post("/webhooks/<int:endpoint_id>/test")
def webhook_test(endpoint_id: int) -> Response:
    """Queue a test event for the worker to send to this endpoint."""
    endpoint = db.get_or_404(WebhookEndpoint, endpoint_id)
    try:
        send_test_event(endpoint, utcnow())
    except EndpointDisabled as exc:
        db.session.rollback()
        flash(str(exc))
    else:
        db.session.commit()
        flash("Test event queued: the worker sends it within a few seconds.")
    return redirect(url_for("admin.webhook", endpoint_id=endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>/enabled")
def webhook_enabled(endpoint_id: int) -> Response:
    """Enable or disable an endpoint (disabling skips what is queued for it)."""
    endpoint = db.get_or_404(WebhookEndpoint, endpoint_id)
    enable = request.form.get("enabled") == "1"
    skipped = set_enabled(endpoint, enable)
    db.session.commit()
    flash("Endpoint enabled." if enable else f"Endpoint disabled; {skipped} queued events skipped.")
    return redirect(url_for("admin.webhook", endpoint_id=endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>/delete")
def webhook_delete(endpoint_id: int) -> Response:
    """Remove an endpoint and its deliveries."""
    endpoint = db.get_or_404(WebhookEndpoint, endpoint_id)
    url = endpoint.url
    delete_endpoint(endpoint)
    db.session.commit()
    flash(f"Endpoint {url} deleted.")
    return redirect(url_for("admin.webhooks"))
