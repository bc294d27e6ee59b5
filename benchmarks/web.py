"""The web side: gunicorn serving the product and a bare Flask route, loaded with wrk."""

from __future__ import annotations

import contextlib
import http.cookiejar
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import BENCH_DIR, ROOT, Row, app_env, free_port, mailer_cli, wait_port, which

WORKERS = 2
CONNECTIONS = 16


@contextlib.contextmanager
def gunicorn(app: str, env: dict[str, str]) -> Iterator[str]:
    """Serve a WSGI app with gunicorn's sync workers on a free loopback port; yield its URL."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS)]
    command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", app]
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_port(port, 30)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(base + "/", timeout=30).status == 200:
                    break
            time.sleep(0.2)
        # The port opens before the workers have built the app: warm every worker up first.
        subprocess.run(
            ["wrk", "-t1", f"-c{WORKERS * 2}", "-d2s", "--timeout", "30s", base + "/"],
            capture_output=True,
            check=False,
            timeout=60,
        )
        yield base
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def wrk(seconds: int, extra: list[str]) -> dict[str, Any]:
    """Run wrk (URL and script in `extra`); requests per second, p99 in ms, error replies."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            *extra,
        ],
        input="",
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "errors": int(errors.group(1)) if errors else 0,
        "requests": int(total.group(1)) if total else 0,
    }


def session_and_token(base: str) -> tuple[str, str]:
    """GET / like a browser: the session cookie and the form's CSRF token."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    html = opener.open(base + "/", timeout=10).read().decode()
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if match is None:
        raise RuntimeError("GET / has no csrf_token in its form")
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    return cookie, match.group(1)


def subscribe_available(base: str, cookie: str, token: str) -> bool:
    """Whether POST /subscribe exists yet (anything but 404/405 for a valid form)."""
    body = urllib.parse.urlencode(
        {"csrf_token": token, "email": "probe@bench.example", "topics": "digest"}
    ).encode()
    request = urllib.request.Request(base + "/subscribe", data=body, headers={"Cookie": cookie})
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        return exc.code not in (404, 405)
    return True


def row(key: str, name: str, result: dict[str, Any], bare: dict[str, Any] | None, note: str) -> Row:
    """A table row for one wrk run, with the ratio to the bare route."""
    ratio = f"; {result['rps'] / bare['rps']:.2f} x bare" if bare else ""
    errors = f"; {result['errors']} error replies" if result["errors"] else ""
    p99 = f"p99 {result['p99_ms']:.1f} ms" if result["p99_ms"] is not None else "p99 ?"
    return Row("web", name, result["rps"], "req/s", f"{p99}{ratio}{errors}{note}", result, key)


def run(seconds: int) -> list[Row]:
    """Requests per second and p99 of the bare route, GET / and POST /subscribe."""
    if which("wrk") is None:
        return [Row("web", "web side", None, "req/s", "not available: wrk is not installed")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mailer-web-") as tmp:
        instance = Path(tmp)
        env = app_env(f"sqlite:///{instance / 'web.db'}", f"file://{instance / 'outbox'}", instance)
        subprocess.run([*mailer_cli(), "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*mailer_cli(), "import-films", str(ROOT / "data" / "films.json")],
            env=env,
            check=True,
            capture_output=True,
        )
        with gunicorn("benchmarks.web_apps:bare", env) as base:
            bare = wrk(seconds, [base + "/"])
        rows.append(
            row(
                "web:bare",
                "bare Flask route, GET",
                bare,
                None,
                f"; gunicorn {WORKERS} sync workers",
            )
        )
        with gunicorn("benchmarks.web_apps:product()", env) as base:
            index = wrk(seconds, [base + "/"])
            rows.append(
                row("web:index", "GET / (films and the form)", index, bare, "; target ≥ 0.5 x bare")
            )
            cookie, token = session_and_token(base)
            if not subscribe_available(base, cookie, token):
                missing = "not available yet: the route does not exist in this checkout"
                rows.append(
                    Row("web", "POST /subscribe", None, "req/s", missing, key="web:subscribe")
                )
            else:
                script = str(BENCH_DIR / "subscribe.lua")
                prefix = f"w{int(time.time())}"
                posted = wrk(seconds, ["-s", script, base, "--", token, cookie, prefix])
                name = "POST /subscribe (new address, valid CSRF)"
                rows.append(row("web:subscribe", name, posted, bare, "; target ≥ 0.25 x bare"))
    return rows
