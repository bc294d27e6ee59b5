"""An installed wheel carries the templates, migrations and catalogue the app needs."""

import zipfile
from pathlib import Path

from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_templates_migrations_and_data(tmp_path: Path) -> None:
    builder = WheelBuilder(str(ROOT))
    (wheel,) = list(builder.build(directory=str(tmp_path), versions=["standard"]))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "mailer/__init__.py",
        "mailer/templates/base.html",
        "mailer/templates/static/style.css",
        "mailer/migrations/env.py",
        "mailer/migrations/alembic.ini",
        "mailer/data/films.json",
    ):
        assert required in names, f"{required} missing from the wheel"
    assert any(n.startswith("mailer/migrations/versions/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mailer = mailer.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
