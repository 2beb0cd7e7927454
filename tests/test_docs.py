"""The README is a front door whose figures come from measured results, and every link in it exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

from training.loso import render_details, render_headline, summarise

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "loso.json"


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- {name} -->\n", 1)[1].split(f"\n<!-- /{name} -->", 1)[0]


def test_generated_tables_match_their_json():
    stored = json.loads(RESULTS.read_text())
    summary = summarise(stored["results"], stored["summary"]["without_libreoffice"]["languages"])
    assert _block((ROOT / "README.md").read_text(encoding="utf-8"), "loso:headline") == render_headline(summary)
    assert _block((ROOT / "docs" / "generalisation.md").read_text(encoding="utf-8"), "loso:details") == render_details(summary)


def test_readme_is_a_front_door_and_its_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+\.md)\)", text)
    assert {"docs/generalisation.md", "docs/training.md", "docs/layout.md"} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), link
    for doc in (ROOT / "docs").glob("*.md"):  # links between the docs resolve too
        for link in re.findall(r"\]\(([^)#:]+\.md)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / link).is_file(), (doc.name, link)


def test_the_readme_commands_are_the_ones_setup_and_ci_run():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^\./setup\.sh && (.+)$", text, re.M)
    assert len(commands) == 2 and commands[1] == ".venv/bin/python -m pytest -q"
    assert ".venv/bin/python -m pytest -q" in (ROOT / ".ci" / "run").read_text()
