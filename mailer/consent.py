"""What a consent record keeps of the request that gave or changed consent."""

from __future__ import annotations

from flask import request

from .subscribers import ConsentContext


def consent_from_request(
    form: str, consent_text: str = "", page_url: str | None = None
) -> ConsentContext:
    """Who is acting, from where: the consent record of this request.

    The page is the one named, else the Referer, else this request's own URL.
    """
    return ConsentContext(
        ip=request.remote_addr or "",
        user_agent=request.user_agent.string,
        form=form,
        page_url=(request.referrer or request.url) if page_url is None else page_url,
        consent_text=consent_text,
    )
