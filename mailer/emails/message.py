"""A message's words become bytes one way: multipart/alternative on the wire policy, signed."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP

from ..backends import Message
from ..config import MailSettings
from .headers import (
    address_of,
    check_header,
    envelope_sender,
    from_address,
    list_id,
    list_unsubscribe,
)
from .signing import sign

# Long List-Unsubscribe URLs must reach the wire unfolded (docs/mail.md, "Headers on the wire").
WIRE_POLICY = SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class Content:
    """One message's words before it becomes bytes."""

    subject: str
    text: str
    html: str
    list_headers: bool  # List-Id, List-Unsubscribe: messages to a subscribed reader
    bulk: bool  # Precedence and Auto-Submitted: newsletters
    unsubscribe_url: str | None = None


def build_email(
    content: Content, to: str, message_id: str, date: str, settings: MailSettings
) -> EmailMessage:
    """The one way a message is assembled; pre-rendering uses it too, with placeholders."""
    policy = WIRE_POLICY if to.isascii() else WIRE_POLICY.clone(utf8=True)
    email = EmailMessage(policy=policy)
    email["From"] = from_address(settings)[0]
    email["To"] = address_of(to)
    email["Subject"] = check_header(content.subject, "Subject")
    email["Date"] = date
    email["Message-ID"] = check_header(message_id, "Message-ID")
    if content.list_headers:
        email["List-Id"] = list_id(settings)
    if content.unsubscribe_url:
        email["List-Unsubscribe"] = list_unsubscribe(content.unsubscribe_url, settings)
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if content.bulk:
        email["Precedence"] = "bulk"
        email["Auto-Submitted"] = "auto-generated"
    email.set_content(content.text, subtype="plain", charset="utf-8", cte=_cte(content.text))
    email.make_alternative()
    html_part = EmailMessage(policy=policy)
    html_part.set_content(content.html, subtype="html", charset="utf-8", cte=_cte(content.html))
    # MIME-Version belongs to the message, not to a part (add_alternative() would repeat it).
    del html_part["MIME-Version"]
    email.attach(html_part)
    return email


def _cte(body: str) -> str:
    """7bit for ASCII, else 8bit: readable on the wire, never base64."""
    return "7bit" if body.isascii() else "8bit"


def finish(
    data: bytes,
    to: str,
    message_id: str,
    settings: MailSettings,
    body_hash: bytes | None = None,
) -> Message:
    """Sign if configured (with the body hash if already known) and wrap for the backend."""
    signed = sign(data, settings, body_hash)
    return Message(envelope_sender(settings), (to,), signed, message_id)
