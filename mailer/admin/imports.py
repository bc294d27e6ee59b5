"""CSV import of subscribers: upload, map the columns, check every row, then add them at once."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from flask import flash, render_template, request
from flask_login import current_user

from ..extensions import db
from ..models import utcnow
from ..subscribers import (
    AddressSuppressed,
    ConsentContext,
    ImportResult,
    InvalidAddress,
    InvalidTopics,
    Topic,
    import_subscriber,
    normalise_email,
    parse_topics,
)
from ..suppressions import is_suppressed
from .base import bp

IMPORT_MAX_BYTES = 5 * 1024 * 1024
IMPORT_MAX_ROWS = 50_000
ERRORS_SHOWN = 200
_TOPIC_SPLIT = re.compile(r"[;,|\s]+")


class ImportFileInvalid(ValueError):
    """A file that cannot be read as CSV with a header row; the message says why."""


class ImportRowsInvalid(ValueError):
    """Rows that cannot be imported: ``errors`` lists (row number, message); nothing is written."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        """Keep the row errors."""
        super().__init__(f"{len(errors)} rows cannot be imported")
        self.errors = errors


@dataclass(frozen=True)
class CsvFile:
    """An uploaded CSV file: its header and data rows (row numbers count the header as 1)."""

    name: str
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class PlannedRow:
    """One checked row, ready to import."""

    line: int
    email: str
    topics: frozenset[Topic]


@dataclass
class ImportPlan:
    """What an import will do, decided before anything is written."""

    rows: list[PlannedRow] = field(default_factory=list)
    suppressed: list[tuple[int, str]] = field(default_factory=list)
    repeated: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class ImportReport:
    """What an import did."""

    results: Counter[str] = field(default_factory=Counter)
    suppressed: list[tuple[int, str]] = field(default_factory=list)
    repeated: list[tuple[int, str]] = field(default_factory=list)


def read_csv(name: str, data: bytes) -> CsvFile:
    """Parse an uploaded file as UTF-8 CSV with a header row."""
    if not data.strip():
        raise ImportFileInvalid("The file is empty.")
    if len(data) > IMPORT_MAX_BYTES:
        raise ImportFileInvalid(f"The file is larger than {IMPORT_MAX_BYTES // 1024 // 1024} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileInvalid(
            f"The file is not UTF-8 text (byte {exc.start + 1}); save it as CSV UTF-8."
        ) from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], ",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        table = [row for row in csv.reader(io.StringIO(text, newline=""), dialect) if any(row)]
    except csv.Error as exc:
        raise ImportFileInvalid(f"The file is not valid CSV: {exc}.") from None
    if len(table) < 2:
        raise ImportFileInvalid("The file needs a header row and at least one address.")
    if len(table) - 1 > IMPORT_MAX_ROWS:
        raise ImportFileInvalid(f"The file has more than {IMPORT_MAX_ROWS} rows; split it.")
    header = [cell.strip() or f"column {n + 1}" for n, cell in enumerate(table[0])]
    return CsvFile(name=name[:200], header=header, rows=table[1:])


def pack(data: bytes) -> str:
    """The uploaded bytes as text for the mapping form's hidden field."""
    return base64.b64encode(data).decode("ascii")


def unpack(text: str) -> bytes:
    """The uploaded bytes back from the mapping form."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ImportFileInvalid("The upload was damaged; please upload the file again.") from None


def guess_column(header: list[str], *names: str) -> int | None:
    """The first column whose name looks like one of names, if any."""
    for index, title in enumerate(header):
        simple = title.strip().lower().replace("-", "_").replace(" ", "_")
        if any(name in simple for name in names):
            return index
    return None


def _topics_of(cell: str, default: frozenset[Topic]) -> frozenset[Topic]:
    """A topics cell (``digest; early_access``), or the default when it is empty."""
    values = [v.lower().replace("-", "_") for v in _TOPIC_SPLIT.split(cell.strip()) if v]
    return frozenset(parse_topics(values)) if values else default


def plan_import(
    csv_file: CsvFile, email_column: int, topics_column: int | None, default: frozenset[Topic]
) -> ImportPlan:
    """Check every row; raise ImportRowsInvalid listing each bad one, else say what will happen."""
    if not 0 <= email_column < len(csv_file.header):
        raise ImportRowsInvalid([(1, "choose the column that holds the addresses")])
    plan, errors, seen = ImportPlan(), [], dict[str, int]()
    for line, row in enumerate(csv_file.rows, start=2):
        cell = row[email_column] if email_column < len(row) else ""
        try:
            email = normalise_email(cell)
            topics_cell = (
                row[topics_column] if topics_column is not None and topics_column < len(row) else ""
            )
            topics = _topics_of(topics_cell, default)
            if not topics:
                raise InvalidTopics("no topics: fill the topics column or tick default topics")
        except (InvalidAddress, InvalidTopics) as exc:
            errors.append((line, f"{cell[:100]!r}: {exc}"))
            continue
        if email in seen:
            plan.repeated.append((line, email))
        elif is_suppressed(email):
            plan.suppressed.append((line, email))
        else:
            seen[email] = line
            plan.rows.append(PlannedRow(line, email, topics))
    if errors:
        raise ImportRowsInvalid(errors)
    return plan


def run_import(
    plan: ImportPlan, consent: ConsentContext, now: datetime, send_confirmation: bool
) -> ImportReport:
    """Add the planned rows (the caller commits once); suppressed addresses are never added."""
    report = ImportReport(suppressed=list(plan.suppressed), repeated=list(plan.repeated))
    for row in plan.rows:
        try:
            result = import_subscriber(
                row.email, [str(t) for t in row.topics], consent, now, send_confirmation
            )
        except AddressSuppressed:
            report.suppressed.append((row.line, row.email))
            continue
        report.results[result] += 1
    return report


def _column(raw: str | None) -> int | None:
    """A column index from the mapping form, None when none is chosen."""
    return int(raw) if raw and raw.isdigit() else None


def _default_topics() -> frozenset[Topic]:
    """The topics ticked on the mapping form for rows that name none."""
    return frozenset(Topic(t) for t in request.form.getlist("default_topics") if t in set(Topic))


def _mapping_page(
    csv_file: CsvFile, packed: str, errors: list[tuple[int, str]], status: int
) -> tuple[str, int]:
    """The column-mapping form, with the file's first rows and any row errors."""
    posted = request.form.get("packed") is not None
    email_column = (
        _column(request.form.get("email_column"))
        if posted
        else guess_column(csv_file.header, "email", "e_mail", "mail", "address")
    )
    topics_column = (
        _column(request.form.get("topics_column"))
        if posted
        else guess_column(csv_file.header, "topic", "list", "interest")
    )
    page = render_template(
        "admin/import_map.html",
        csv_file=csv_file,
        sample=csv_file.rows[:5],
        packed=packed,
        email_column=email_column,
        topics_column=topics_column,
        defaults=_default_topics() if posted else frozenset(Topic),
        opted_in=bool(request.form.get("opted_in")),
        origin=request.form.get("origin", ""),
        errors=errors[:ERRORS_SHOWN],
        error_count=len(errors),
        topics=list(Topic),
    )
    return page, status


def _import_consent(csv_file: CsvFile, opted_in: bool, origin: str) -> ConsentContext:
    """The consent record kept with each imported subscriber: the import is the source."""
    if opted_in:
        words = f"Imported by the admin {current_user.email} from {csv_file.name!r}: "
        words += "these people already opted in elsewhere"
        words += f" ({origin})." if origin else "."
    else:
        words = (
            f"Imported by the admin {current_user.email} from {csv_file.name!r}; "
            "each was sent a confirmation and is added only on confirming."
        )
    return ConsentContext(
        ip=request.remote_addr or "",
        user_agent=request.user_agent.string,
        form="admin CSV import",
        page_url=request.url,
        consent_text=words,
    )


@bp.route("/subscribers/import", methods=["GET", "POST"])
def subscribers_import() -> tuple[str, int]:
    """Upload a CSV file, then map its columns."""
    if request.method == "GET":
        return render_template("admin/import_upload.html", error=""), 200
    upload = request.files.get("file")
    data = upload.read(IMPORT_MAX_BYTES + 1) if upload is not None else b""
    try:
        csv_file = read_csv((upload.filename or "upload.csv") if upload else "", data)
    except ImportFileInvalid as exc:
        return render_template("admin/import_upload.html", error=str(exc)), 400
    return _mapping_page(csv_file, pack(data), [], 200)


@bp.post("/subscribers/import/run")
def subscribers_import_run() -> tuple[str, int]:
    """Check every row of the mapped file, then add them all in one transaction, or none."""
    packed = request.form.get("packed", "")
    try:
        csv_file = read_csv(request.form.get("name", "upload.csv"), unpack(packed))
    except ImportFileInvalid as exc:
        return render_template("admin/import_upload.html", error=str(exc)), 400
    opted_in = bool(request.form.get("opted_in"))
    origin = " ".join(request.form.get("origin", "").split())[:300]
    email_column = _column(request.form.get("email_column"))
    try:
        plan = plan_import(
            csv_file,
            -1 if email_column is None else email_column,
            _column(request.form.get("topics_column")),
            _default_topics(),
        )
    except ImportRowsInvalid as exc:
        return _mapping_page(csv_file, packed, exc.errors, 400)
    report = run_import(plan, _import_consent(csv_file, opted_in, origin), utcnow(), not opted_in)
    db.session.commit()
    added = (
        report.results[ImportResult.ADDED_PENDING] + report.results[ImportResult.ADDED_CONFIRMED]
    )
    flash(f"Import finished: {added} added.")
    return render_template("admin/import_done.html", report=report, opted_in=opted_in), 200
