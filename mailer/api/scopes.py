"""Which API token scope each API request needs: read, write (an editor's) or admin (an owner's).

Checked for every request by the resources' shared guard. A request missing from the table
needs the admin scope, so a new endpoint is safe until someone decides otherwise (and
tests/test_api_scopes.py fails until the table names it).
"""

from __future__ import annotations

from ..models import ApiScope

READ, WRITE, ADMIN = ApiScope.READ, ApiScope.WRITE, ApiScope.ADMIN

# Reading anything needs only the read scope.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCOPES: dict[str, ApiScope] = {
    # Films and digests: what an editor does in the admin.
    "films.create_film": WRITE,
    "films.update_film": WRITE,
    "films.remove_film": WRITE,
    "digests.create": WRITE,
    "digests.update": WRITE,
    "digests.duplicate": WRITE,
    "digests.send": WRITE,
    "digests.pause": WRITE,
    "digests.resume": WRITE,
    "digests.cancel": WRITE,
    # Starting a double opt-in and suppressing an address can be undone; erasing and
    # taking an address off the suppression list are an owner's.
    "subscribers.create_subscriber": WRITE,
    "suppressions.create_suppression": WRITE,
    "subscribers.delete_subscriber": ADMIN,
    "suppressions.delete_suppression": ADMIN,
}
DEFAULT = ADMIN


def scope_needed(endpoint: str, method: str) -> ApiScope:
    """The least scope a request needs."""
    if method in READ_METHODS:
        return READ
    return SCOPES.get(endpoint, DEFAULT)


def scope_allows(scope: str, endpoint: str, method: str) -> bool:
    """Whether a token of ``scope`` may make this request."""
    return ApiScope(scope).rank >= scope_needed(endpoint, method).rank
