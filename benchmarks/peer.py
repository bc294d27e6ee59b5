"""A peer: django-newsletter from PyPI, in its own virtual environment, into the same sink."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from .common import BENCH_DIR, Row, Sink
from .naive import digest_context

VENV = BENCH_DIR / ".peer-venv"
# Its image fields need a thumbnailer; sorl-thumbnail is its default.
REQUIREMENTS = ["django-newsletter>=1.2", "sorl-thumbnail>=12.10"]

SETTINGS = """
SECRET_KEY = "bench"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sites",
    "sorl.thumbnail",
    "newsletter",
]
SITE_ID = 1
ROOT_URLCONF = "bench_urls"
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}}]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = {host!r}
EMAIL_PORT = {port}
EMAIL_USE_TLS = {tls}
DEFAULT_FROM_EMAIL = "newsletter@bench.example"
NEWSLETTER_THUMBNAIL = "sorl-thumbnail"
NEWSLETTER_CONFIRM_EMAIL = False
# Its sending delays, switched off (the documented example settings pause between messages).
NEWSLETTER_EMAIL_DELAY = 0
NEWSLETTER_BATCH_DELAY = 0
NEWSLETTER_BATCH_SIZE = 0
"""

URLS = """
from django.urls import include, path
urlpatterns = [path("newsletter/", include("newsletter.urls"))]
"""

SCRIPT = """
import json, sys, time
import django
django.setup()
from django.core.management import call_command
from django.utils import timezone
from newsletter.models import Article, Message, Newsletter, Submission, Subscription

call_command("migrate", verbosity=0)
content = json.loads(sys.argv[2])
count = int(sys.argv[1])
newsletter = Newsletter.objects.create(
    title="Documentaries", slug="documentaries", email="newsletter@bench.example",
    sender="Documentaries",
)
message = Message.objects.create(title=content["subject"], slug="ten-films", newsletter=newsletter)
Article.objects.create(post=message, sortorder=0, title=content["subject"],
                       text="<p>" + content["intro"] + "</p>")
for position, film in enumerate(content["films"], start=1):
    text = "".join("<p>" + p + "</p>" for p in film["description"].split("\\n\\n"))
    Article.objects.create(
        post=message, sortorder=position * 10, title=film["title"],
        text=text + "<p><em>" + film["note"] + "</em></p>",
        url=content["base_url"] + "/films/" + film["slug"],
    )
Subscription.objects.bulk_create(
    Subscription(newsletter=newsletter, email_field=f"reader{i}@bench.example",
                 name_field=f"Reader {i}", subscribed=True)
    for i in range(1, count + 1)
)
submission = Submission.from_message(message)
submission.publish_date = timezone.now() - timezone.timedelta(seconds=1)
submission.prepared = True
submission.save()
start = time.perf_counter()
Submission.submit_queue()
elapsed = time.perf_counter() - start
submission.refresh_from_db()
first = submission.get_message(Subscription.objects.first()).message().as_bytes()
print(json.dumps({"seconds": elapsed, "sent": submission.sent, "bytes": len(first)}))
"""


def ensure_venv(log: list[str]) -> Path | None:
    """Create the peer's virtual environment and install django-newsletter into it once."""
    python = VENV / "bin" / "python"
    if not python.exists():
        log.append(f"creating {VENV.name} with {' '.join(REQUIREMENTS)}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import newsletter, sorl"], capture_output=True)
    if probe.returncode != 0:
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
            capture_output=True,
            text=True,
        )
        if install.returncode != 0:
            log.append(f"cannot install the peer: {install.stderr.strip()[-300:]}")
            return None
    return python


def run(sink: Sink, count: int, timeout: float, log: list[str], section: str = "peer") -> list[Row]:
    """Messages per second of django-newsletter sending the digest to `count` subscribers."""
    name = "peer: django-newsletter, delays off, Django SMTP backend"
    python = ensure_venv(log)
    if python is None:
        return [Row(section, name, None, "msg/s", "not available: django-newsletter not installed")]
    version = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(m.version('django-newsletter'))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="mailer-peer-") as tmp:
        project = Path(tmp)
        db = project / "peer.sqlite3"
        (project / "bench_settings.py").write_text(
            SETTINGS.format(db=str(db), host=sink.host, port=sink.port, tls=bool(sink.cafile))
        )
        (project / "bench_urls.py").write_text(URLS)
        (project / "bench_send.py").write_text(textwrap.dedent(SCRIPT))
        result = subprocess.run(
            [str(python), "bench_send.py", str(count), json.dumps(digest_context())],
            cwd=project,
            env={"DJANGO_SETTINGS_MODULE": "bench_settings", "PYTHONPATH": str(project),
                 "PATH": "/usr/bin:/bin",
                 # Django's STARTTLS trusts the default CA store, which this points at.
                 **({"SSL_CERT_FILE": sink.cafile} if sink.cafile else {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"django-newsletter run failed: {result.stderr.strip()[-800:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["sent"]:
        raise RuntimeError("django-newsletter did not mark its submission sent")
    return [
        Row(
            section,
            name,
            count / report["seconds"],
            "msg/s",
            f"django-newsletter {version}; {count} messages of {report['bytes'] // 1024} KiB,"
            " a new connection per message (its design)",
            {**report, "count": count, "version": version},
            key=section,
        )
    ]
