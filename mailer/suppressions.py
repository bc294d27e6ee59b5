"""The suppression list: addresses never mailed or re-added, and the mail queued to them skipped."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from .address_hash import email_hash, normalise_address
from .extensions import db, dialect_insert
from .journal import skip_pending_to
from .models import Suppression, SuppressionReason

log = logging.getLogger("mailer.suppressions")

NOTE_MAX = 2000


class SuppressionInvalid(ValueError):
    """A suppression that cannot be stored; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        """Keep the field errors."""
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


# --- the list -----------------------------------------------------------------------------------


def find_suppression(address: str) -> Suppression | None:
    """The suppression-list entry of an address, if it has one."""
    return db.session.scalar(
        select(Suppression)
        .where(Suppression.email_hash == email_hash(address))
        .execution_options(populate_existing=True)
    )


def is_suppressed(address: str) -> bool:
    """Whether an address is on the suppression list."""
    found = db.session.scalar(
        select(Suppression.id).where(Suppression.email_hash == email_hash(address))
    )
    return found is not None


def suppress(address: str, reason: SuppressionReason, now: datetime, note: str = "") -> Suppression:
    """Put an address on the suppression list, once, skip mail queued to it; return the entry.

    A second call keeps the first entry, except an erasure: it outranks any earlier reason, and
    the address itself goes (only its hash stays). One statement, so two workers suppressing the
    same address at once both succeed.
    """
    erased = reason == SuppressionReason.ERASED
    values = {
        "email_hash": email_hash(address),
        "email": None if erased else normalise_address(address),
        "reason": reason,
        "note": note[:NOTE_MAX],
        "created_at": now,
    }
    stmt = dialect_insert(Suppression.__table__).values(**values)
    if erased:
        stmt = stmt.on_conflict_do_update(
            index_elements=["email_hash"],
            set_={"reason": reason, "email": None, "note": values["note"]},
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["email_hash"])
    db.session.execute(stmt)
    skip_pending_to(address, f"suppressed: {reason}")
    entry = find_suppression(address)
    assert entry is not None
    return entry


def unsuppress(entry: Suppression, why: str, by: str) -> None:
    """Take an address off the suppression list, logging who did it and why."""
    why = why.strip()
    if not why:
        raise SuppressionInvalid({"why": "is required: say why the address may be mailed again"})
    log.info(
        "suppression %s (%s) removed by %s: %s", entry.id, entry.reason, by, why.replace("\n", " ")
    )
    db.session.delete(entry)
