"""The documentation stays true to the code: links resolve, settings and commands are documented."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click
import markdown
import pytest
from flask.cli import FlaskGroup, ScriptInfo

from mailer import create_app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [
    README,
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "tests" / "browser" / "README.md",
    ROOT / "benchmarks" / "README.md",
]
ENV_NAME = re.compile(r"^MAILER_[A-Z0-9_]+$")


class LinksAndHeadings(HTMLParser):
    """Collects link and image targets, and the text of each heading, from rendered Markdown."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.headings: list[str] = []
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note an href or src, and the start of a heading."""
        for name, value in attrs:
            if value and (tag, name) in (("a", "href"), ("img", "src")):
                self.targets.append(value)
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        """Close a heading."""
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data: str) -> None:
        """Heading text, code spans included."""
        if self._heading is not None:
            self._heading.append(data)


def parsed(path: Path) -> LinksAndHeadings:
    """The links, images and headings of a Markdown file, as a renderer sees them."""
    parser = LinksAndHeadings()
    parser.feed(markdown.markdown(path.read_text(), extensions=["tables", "fenced_code"]))
    return parser


def anchors(path: Path) -> set[str]:
    """The fragment ids GitHub gives the headings of a Markdown file."""
    seen: dict[str, int] = {}
    result = set()
    for heading in parsed(path).headings:
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def relative_targets() -> Iterator[tuple[Path, str]]:
    """Every (file, target) of a link or image that points inside the repository."""
    for doc in DOCS:
        for target in parsed(doc).targets:
            parts = urlsplit(target)
            if not parts.scheme and not parts.netloc:
                yield doc, target


def test_the_documents_exist() -> None:
    """The README points at these; losing one is a broken manual, not a passing test."""
    assert all(doc.is_file() for doc in DOCS), [str(d) for d in DOCS if not d.is_file()]


@pytest.mark.parametrize(
    ("doc", "target"),
    list(relative_targets()),
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_every_relative_link_and_image_resolves(doc: Path, target: str) -> None:
    """A relative link names a file or folder that exists, and a heading there if it has a #."""
    parts = urlsplit(target)
    path = (doc.parent / unquote(parts.path)).resolve() if parts.path else doc
    assert path.exists(), f"{doc.relative_to(ROOT)}: {target} does not exist"
    assert path.is_relative_to(ROOT), f"{doc.relative_to(ROOT)}: {target} leaves the repository"
    if parts.fragment:
        assert path.suffix == ".md", f"{doc.relative_to(ROOT)}: {target}: # on a non-Markdown file"
        assert parts.fragment in anchors(path), (
            f"{doc.relative_to(ROOT)}: {target}: no such heading in {path.relative_to(ROOT)}"
        )


def _is_environment(node: ast.expr) -> bool:
    """`env`, `environ` or `os.environ`: a mapping of environment variables."""
    if isinstance(node, ast.Name):
        return node.id in ("env", "environ")
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def environment_reads(tree: ast.AST) -> Iterator[str]:
    """MAILER_* names a module reads from the environment (not from the app's config)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            names = [str(a.value) for a in node.args if isinstance(a, ast.Constant)]
            func = node.func
            # env.get("X"), os.environ.get("X"), os.getenv("X")
            from_mapping = isinstance(func, ast.Attribute) and (
                (func.attr in ("get", "pop", "setdefault") and _is_environment(func.value))
                or func.attr == "getenv"
            )
            # helpers handed the environment: _int(env, "X", 1)
            from_helper = any(_is_environment(a) for a in node.args)
            if from_mapping or from_helper:
                yield from (n for n in names if ENV_NAME.match(n))
            for keyword in node.keywords:  # click options: envvar="X"
                if keyword.arg == "envvar":
                    for value in ast.walk(keyword.value):
                        if isinstance(value, ast.Constant) and ENV_NAME.match(str(value.value)):
                            yield str(value.value)
        elif isinstance(node, ast.Subscript) and _is_environment(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and ENV_NAME.match(str(key.value)):
                yield str(key.value)


def variables_read_by_the_code() -> set[str]:
    """Every MAILER_* environment variable read anywhere in mailer/."""
    return {
        name
        for source in (ROOT / "mailer").rglob("*.py")
        for name in environment_reads(ast.parse(source.read_text()))
    }


def configuration_table() -> set[str]:
    """The MAILER_* names in the first column of the README's configuration table."""
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return {name for row in rows for name in re.findall(r"MAILER_[A-Z0-9_]+", row.split("|")[1])}


def test_the_scan_sees_the_ways_settings_are_read() -> None:
    """A helper, a mapping, os.environ and a click option count; the app's config does not."""
    tree = ast.parse(
        "a = _int(env, 'MAILER_A', 1)\n"
        "b = env.get('MAILER_B')\n"
        "c = os.environ.get('MAILER_C') or os.environ['MAILER_D']\n"
        "e = click.option('--password', envvar='MAILER_E')\n"
        "f = current_app.config.get('MAILER_F') or current_app.config['MAILER_G']\n"
    )
    assert set(environment_reads(tree)) == {f"MAILER_{x}" for x in "ABCDE"}
    assert {"MAILER_ENV", "MAILER_INSTANCE_PATH", "MAILER_ADMIN_PASSWORD"} <= (
        variables_read_by_the_code()
    )


def test_every_setting_the_code_reads_is_in_the_configuration_table() -> None:
    """The README documents each variable with its default (it may document some not merged yet)."""
    missing = variables_read_by_the_code() - configuration_table()
    assert not missing, f"add to the README's configuration table: {sorted(missing)}"


def cli_commands(test_env: dict[str, str]) -> list[str]:
    """`mailer NAME` for every command, and `mailer GROUP NAME` for the subcommands we define."""
    group = FlaskGroup(create_app=create_app)
    ctx = click.Context(group, info_name="mailer", obj=ScriptInfo(create_app=create_app))
    found = []
    with ctx:
        for name in group.list_commands(ctx):
            found.append(f"mailer {name}")
            command = group.get_command(ctx, name)
            if isinstance(command, click.Group):
                for sub_name, sub in command.commands.items():
                    if sub.callback and sub.callback.__module__.startswith("mailer."):
                        found.append(f"mailer {name} {sub_name}")
    return found


def test_every_command_is_in_the_readme(test_env: dict[str, str]) -> None:
    """`mailer --help` lists nothing the README leaves out."""
    commands = cli_commands(test_env)
    assert "mailer worker" in commands and "mailer api-token create" in commands
    readme = README.read_text()
    missing = [c for c in commands if not re.search(re.escape(c) + r"\b", readme)]
    assert not missing, f"document in the README's Commands: {missing}"
