"""SpamAssassin (no network tests) scores every kind of message below 1.0, no structural rule."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from flask import Flask

from mailer.backends import Message
from mailer.models import DeliveryKind
from tests.factories import World, machine_now, render

# Rules that would mean the message itself is malformed, not merely promotional.
STRUCTURAL = re.compile(
    r"^(MIME_HTML_ONLY|MIME_HTML_MOSTLY|MPART_ALT_DIFF\w*|MISSING_\w+|MIME_BASE64_TEXT|"
    r"DATE_IN_PAST\w*|DATE_IN_FUTURE\w*|INVALID_DATE\w*|HTML_MIME_NO_HTML_TAG|"
    r"MIME_QP_LONG_LINE|MIME_BOUND\w*|MSGID_\w+|HEADER_\w+|HTML_SHORT_LENGTH|"
    r"MIME_NO_TEXT|CTYPE_\w+|__?MIME_\w+_DEFECT\w*|TO_NO_BRKTS\w*|FROM_EXCESS_BASE64)$"
)


def spamassassin() -> str:
    """The spamassassin program, or a skip (a failure in CI) saying how to get it."""
    found = shutil.which("spamassassin")
    if found:
        return found
    reason = (
        "spamassassin is not installed: apt-get install -y --no-install-recommends spamassassin"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(f"!!! {reason} !!!")


SEPARATOR = b"From mailer-test Thu Jan  1 00:00:00 2026\r\n"


def scores(program: str, messages: list[Message]) -> list[tuple[float, list[str]]]:
    """SpamAssassin's score and fired rules for each message: one run over an mbox, local tests."""
    for message in messages:
        # Unchanged bytes go in; a body line starting "From " would need mbox quoting.
        assert not re.search(rb"(^|\n)From ", message.data)
    mbox = b"".join(SEPARATOR + message.data + b"\r\n" for message in messages)
    result = subprocess.run(
        [program, "-L", "-t", "--mbox"], input=mbox, capture_output=True, timeout=300, check=False
    )
    output = result.stdout.decode("utf-8", "replace")
    reports = re.split(r"^From mailer-test .*$", output, flags=re.M)[1:]
    assert len(reports) == len(messages), output[-3000:]
    found: dict[str, tuple[float, list[str]]] = {}
    for report in reports:
        # Reports may come back in another order: match them up by Message-ID.
        message_id = re.search(r"^Message-ID: (<[^>]+>)", report, re.M | re.I)
        assert message_id, report[:2000]
        status = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, re.M)
        assert status, report[-2000:]
        details = report.split("Content analysis details:", 1)[-1]
        rules = re.findall(r"^\s*-?[\d.]+\s+([A-Z0-9_]+)\s", details, re.M)
        found[message_id.group(1)] = (float(status.group(1)), rules)
    return [found[message.message_id] for message in messages]


def test_spamassassin_scores_every_kind_below_one(app: Flask, world: World) -> None:
    program = spamassassin()
    kinds = list(DeliveryKind)
    # SpamAssassin judges the Date header by the machine's clock, not by the tests' one.
    messages = [render(kind, world, now=machine_now()) for kind in kinds]
    results = scores(program, messages)
    for kind, (value, rules) in zip(kinds, results, strict=True):
        print(f"spamassassin {kind.value}: score {value} ({' '.join(rules)})")
    for kind, (value, rules) in zip(kinds, results, strict=True):
        assert value < 1.0, (kind, rules)
        assert not [rule for rule in rules if STRUCTURAL.match(rule)], (kind, rules)
