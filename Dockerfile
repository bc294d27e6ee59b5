# The mailer image: the wheel and its dependencies in a virtualenv, run as an unprivileged user.
# One image for every role; the command picks it (see compose.yaml):
#   default                 the web app under gunicorn (deploy/gunicorn.conf.py) on port 8000,
#                           WEB_CONCURRENCY processes (default 2)
#   mailer worker           the sending worker
#   mailer db upgrade       the schema, once per release, before the others start

# --- build: the wheel, exactly as `pip wheel` builds it from pyproject.toml (hatchling) ---------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mailer/ mailer/
COPY templates/ templates/
COPY migrations/ migrations/
COPY data/ data/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# --- runtime: nothing but the installed wheel ---------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PATH=/opt/mailer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MAILER_INSTANCE_PATH=/var/lib/mailer
# A fixed numeric id, so that volumes and the host see the same owner.
RUN groupadd --system --gid 10001 mailer \
    && useradd --system --no-log-init --uid 10001 --gid mailer \
       --home-dir /var/lib/mailer --create-home mailer \
    && python -m venv /opt/mailer
COPY --from=build /dist/ /tmp/dist/
RUN /opt/mailer/bin/pip install --no-cache-dir /tmp/dist/*.whl \
    && rm -rf /tmp/dist
COPY deploy/gunicorn.conf.py /etc/mailer/gunicorn.conf.py

USER 10001:10001
WORKDIR /var/lib/mailer
VOLUME ["/var/lib/mailer"]
EXPOSE 8000
# No curl in a slim image: Python asks /healthz (200 when the database answers, else 503).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["gunicorn", "--config", "/etc/mailer/gunicorn.conf.py", "--bind", "0.0.0.0:8000"]
