"""The film catalogue: the seed file, the importer and the public pages."""

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.films import FilmImportError, import_films, read_film_rows
from mailer.models import Film
from mailer.paths import FILMS_FILE


def film_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Film.id)))


def test_seed_file_has_the_nine_distinct_films_of_the_article() -> None:
    rows = json.loads(FILMS_FILE.read_text())
    titles = [row["title"] for row in rows]
    assert len(titles) == 9 == len(set(titles))
    assert "North Korea: The Great Illusion" in titles
    state_of_mind = next(row for row in rows if row["slug"] == "a-state-of-mind")
    # Both of the article's entries survive in the one record.
    assert "Mass Games, a grand spectacle" in state_of_mind["description"]
    assert "its national sport" in state_of_mind["description"]
    assert state_of_mind["director"] == "Daniel Gordon"


def test_import_command_loads_seed_and_is_idempotent(app, runner) -> None:
    first = runner.invoke(args=["import-films", str(FILMS_FILE)])
    assert first.exit_code == 0, first.output
    assert "9 created" in first.output
    with app.app_context():
        stamps = dict(db.session.execute(select(Film.slug, Film.updated_at)).all())
    second = runner.invoke(args=["import-films", str(FILMS_FILE)])
    assert "0 created, 0 updated, 9 unchanged" in second.output
    with app.app_context():
        assert dict(db.session.execute(select(Film.slug, Film.updated_at)).all()) == stamps


def test_import_if_empty_leaves_an_existing_catalogue_alone(app, runner, tmp_path: Path) -> None:
    runner.invoke(args=["import-films", str(FILMS_FILE)])
    result = runner.invoke(args=["import-films", "--if-empty", str(FILMS_FILE)])
    assert "already has films" in result.output
    assert film_count(app) == 9


def test_import_csv_updates_by_slug(app, runner, tmp_path: Path) -> None:
    runner.invoke(args=["import-films", str(FILMS_FILE)])
    csv_file = tmp_path / "films.csv"
    csv_file.write_text(
        "slug,title,year,release_date,watch_url\n"
        "under-the-sun,Under the Sun,2015,2016-03-01,https://example.org/watch/under-the-sun\n"
        ",Brand New Film,2026,,\n"
    )
    result = runner.invoke(args=["import-films", str(csv_file)])
    assert result.exit_code == 0, result.output
    assert "1 created, 1 updated, 0 unchanged" in result.output
    with app.app_context():
        film = db.session.scalar(select(Film).where(Film.slug == "under-the-sun"))
        assert film.watch_url == "https://example.org/watch/under-the-sun"
        assert film.director == "Vitaly Mansky"  # fields absent from the file are kept
        assert db.session.scalar(select(Film).where(Film.slug == "brand-new-film")) is not None


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        ('[{"title": "Good"}, {"title": "Bad", "year": "soon"}]', ".json", "row 2, field year"),
        ('[{"title": ""}]', ".json", "row 1, field title: is required"),
        ('[{"title": "X", "watch_url": "javascript:alert(1)"}]', ".json", "row 1, field watch_url"),
        ('[{"title": "X", "rating": 5}]', ".json", "row 1, field rating: is not a film field"),
        (
            '[{"title": "Same"}, {"title": "Same"}]',
            ".json",
            "row 2, field slug: 'same' repeats row 1",
        ),
        ('[{"title": "X\\r\\nBcc: a@b"}]', ".json", "row 1, field title"),
        ("title,year\nOk,2001\nNope,19x\n", ".csv", "row 2, field year"),
        ("title\nOk,extra\n", ".csv", "row 1: more values than header columns"),
        ("{not json", ".json", "not valid JSON"),
        ('{"title": "not a list"}', ".json", "expected a list of films"),
    ],
)
def test_malformed_file_names_the_row_and_writes_nothing(
    app, runner, tmp_path: Path, content: str, suffix: str, expected: str
) -> None:
    runner.invoke(args=["import-films", str(FILMS_FILE)])
    with app.app_context():
        before = db.session.execute(select(Film.slug, Film.updated_at).order_by(Film.slug)).all()
    bad = tmp_path / f"bad{suffix}"
    bad.write_text(content)
    result = runner.invoke(args=["import-films", str(bad)])
    assert result.exit_code != 0
    assert expected in result.output
    assert "nothing was imported" in result.output
    with app.app_context():
        after = db.session.execute(select(Film.slug, Film.updated_at).order_by(Film.slug)).all()
    assert before == after


def test_import_films_validates_before_writing(app) -> None:
    with app.app_context():
        with pytest.raises(FilmImportError) as caught:
            import_films([{"title": "Fine"}, {"title": "Late", "early_access_at": "tomorrow"}])
        assert caught.value.problems == [
            "row 2, field early_access_at: must be a date and time like 2026-12-01T09:00:00Z"
        ]
        db.session.rollback()
        assert db.session.scalar(select(func.count(Film.id))) == 0


def test_read_film_rows_accepts_wrapped_json(tmp_path: Path) -> None:
    wrapped = tmp_path / "films.json"
    wrapped.write_text('{"films": [{"title": "A"}]}')
    assert read_film_rows(wrapped) == [{"title": "A"}]
