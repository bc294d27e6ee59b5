"""Where the templates, migrations and data files are, in a checkout or an installed wheel."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Return the folder ``name``: inside the package when installed, else beside it."""
    packaged = PACKAGE_DIR / name
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / name


TEMPLATES_DIR = resource_dir("templates")
MIGRATIONS_DIR = resource_dir("migrations")
DATA_DIR = resource_dir("data")
STATIC_DIR = TEMPLATES_DIR / "static"
FILMS_FILE = DATA_DIR / "films.json"
# The compiled catalogues live in the package itself, in a checkout and a wheel alike.
TRANSLATIONS_DIR = PACKAGE_DIR / "translations"
