"""gunicorn settings for the mailer web app: `gunicorn -c deploy/gunicorn.conf.py`."""

from __future__ import annotations

import os
import sys


def _workers() -> int:
    """WEB_CONCURRENCY (gunicorn's own variable), a whole number of at least 1; default 2."""
    raw = os.environ.get("WEB_CONCURRENCY", "").strip() or "2"
    if not raw.isdigit() or int(raw) < 1:
        sys.exit(f"gunicorn: WEB_CONCURRENCY must be a whole number of at least 1, got {raw!r}")
    return int(raw)


# The app comes from the installed package, so a wheel alone serves (wsgi.py is for checkouts).
wsgi_app = "mailer:create_app()"
# Loopback, for a reverse proxy on the same machine; `--bind` on the command line overrides it
# (the container image listens on 0.0.0.0:8000 inside its own network).
bind = ["127.0.0.1:8000"]
workers = _workers()

# Requests are short. A worker stopped with SIGTERM gets graceful_timeout to finish its request;
# systemd's TimeoutStopSec and compose's stop_grace_period for the web leave a margin over it.
timeout = 30
graceful_timeout = 30
keepalive = 5

accesslog = "-"
errorlog = "-"
# The client as the app sees it (%(h)s is the proxy's address behind one), the time taken in ms.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'

# Which X-Forwarded-* headers are believed is decided in one place, the app's ProxyFix with
# MAILER_TRUSTED_PROXIES hops (docs/operations.md): gunicorn itself believes none, from any
# address, or its default (trust 127.0.0.1) would apply X-Forwarded-Proto with the setting at 0.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}

# No runtime control socket: restarts and reloads go through the supervisor.
control_socket_disable = True
