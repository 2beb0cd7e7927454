"""The README is a front door whose figures come from measured results, and every link in it exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks.loso import render_details, render_headline, summarise

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "loso.json"


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- {name} -->\n", 1)[1].split(f"\n<!-- /{name} -->", 1)[0]


def test_generated_tables_match_their_json():
    stored = json.loads(RESULTS.read_text())
    summary = summarise(stored["results"], stored["summary"]["without_libreoffice"]["languages"])
    assert _block((ROOT / "README.md").read_text(encoding="utf-8"), "loso:headline") == render_headline(summary)
    assert _block((ROOT / "docs" / "results" / "generalisation.md").read_text(encoding="utf-8"), "loso:details") == render_details(summary)


def test_the_classification_tables_match_their_json():
    """docs/results/classification.md and the README's line are what benchmarks.help_modules renders
    from benchmarks/results/help_modules.json (issue 35), and the summary is recomputed from the
    per-language scores."""
    from benchmarks.help_modules import CARD, SPACE, headline, render, summarise

    stored = json.loads((ROOT / "benchmarks" / "results" / "help_modules.json").read_text())
    assert _block((ROOT / "docs" / "results" / "classification.md").read_text(encoding="utf-8"), "help-modules") == render(stored)
    assert _block((ROOT / "README.md").read_text(encoding="utf-8"), "help-modules") == headline(stored)
    per = stored["per_language"]
    assert summarise(per["english setting"], CARD, stored["lowest_quarter"]) == stored["english_setting"]
    assert summarise(per["settings"], f"{SPACE}: every, sprachbund", stored["lowest_quarter"]) == stored["settings"]
    assert len(per["english setting"][CARD]) == 28 and "en" not in per["english setting"][CARD]


def test_readme_is_a_front_door_and_its_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200  # issue 34: a front door, not a manual
    links = re.findall(r"\]\(([^)#]+\.md)\)", text)
    assert {"docs/results/generalisation.md", "docs/guide/training.md", "docs/development/layout.md"} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), link
    for doc in (ROOT / "docs").rglob("*.md"):  # links between the docs resolve too
        for link in re.findall(r"\]\(([^)#:]+\.md)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / link).is_file(), (doc.name, link)


def test_the_readme_commands_are_the_ones_setup_and_ci_run():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^\./setup\.sh && (.+)$", text, re.M)
    assert len(commands) == 2 and commands[1] == ".venv/bin/python -m pytest -q"
    assert ".venv/bin/python -m pytest -q" in (ROOT / ".ci" / "run").read_text()


# ---------------------------------------------------------------------------- figures
#: Figures that are settings, not measurements (each with where it comes from).
NOT_MEASURED = {
    "0.9999": "the sentence-transformers export's parity requirement (a threshold)",
}
#: Blocks whose figures are generated (and checked above), and dated records of past runs
#: (``<!-- history -->``: what an earlier build measured, kept as a log, never updated).
EXEMPT_BLOCKS = ("loso:headline", "loso:details", "ray-example", "history", "top-layers:judged", "top-layers:cost")


def _measured_values() -> set[str]:
    """Every number in the measured results (benchmarks/results, the shipped space's provenance),
    as the docs may write it: rounded to 0-5 decimals, as a share or a percentage."""
    values: set[str] = set()

    def walk(o: object) -> None:
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, (int, float)) and not isinstance(o, bool):
            for x in (o, 100 * o, o / 100):
                values.update(f"{abs(round(x, d)):.{d}f}" for d in range(6))
        elif isinstance(o, str):
            values.update(m.lstrip("-") for m in re.findall(r"-?\d+\.\d+", o))

    for path in [*(ROOT / "benchmarks" / "results").glob("*.json"), *(ROOT / "training" / "artifacts").glob("*.json")]:
        walk(json.loads(path.read_text(encoding="utf-8")))
    return values


def _without_blocks(text: str) -> str:
    for name in EXEMPT_BLOCKS:
        text = re.sub(rf"<!-- {re.escape(name)} -->\n.*?<!-- /{re.escape(name)} -->", "", text, flags=re.S)
    return text


def untraced_figures(text: str, values: set[str]) -> list[str]:
    """Decimal figures of ``text`` (outside exempt blocks) found in no measured result. A gain
    written as ``a (+d)`` counts when ``a`` and ``a - d`` both are."""
    text = _without_blocks(text)
    missing = []
    gains = set()
    for m in re.finditer(r"(\d+\.\d+)\*{0,2} \(([+\-−])(\d+\.\d+)\)", text):
        a, sign, d = float(m.group(1)), m.group(2), float(m.group(3))
        base = a - d if sign == "+" else a + d
        digits = len(m.group(3).split(".")[1])
        if f"{round(base, digits):.{digits}f}" in values and m.group(1) in values:
            gains.add(m.start(3))
    for m in re.finditer(r"(?<![\w.])(\d+\.\d+)(?![\w.])", text):
        n = m.group(1)
        if m.start(1) in gains or n in values or n in NOT_MEASURED:
            continue
        missing.append(n)
    return missing


def test_untraced_figures_finder_on_a_toy():
    values = {"89.64", "82.39", "0.51"}
    text = "ok 89.64 (+7.25) and 0.51; stale 91.20 and 89.64 (+7.00)\n<!-- history -->\nold 12.34\n<!-- /history -->\n"
    assert untraced_figures(text, values) == ["91.20", "7.00"]


def test_every_figure_in_the_docs_comes_from_a_measured_result():
    """No hand-copied number can go stale: every decimal figure in the README and docs is in
    benchmarks/results/*.json or the shipped artifacts, or generated, or in a dated history block."""
    values = _measured_values()
    found = {}
    # the default build's analysis report (docs/results/default-router-analysis) is a copy of what the build wrote
    docs = [d for d in sorted((ROOT / "docs").rglob("*.md")) if "default-router-analysis" not in d.parts]
    for doc in [ROOT / "README.md", *docs]:
        if missing := untraced_figures(doc.read_text(encoding="utf-8"), values):
            found[doc.name] = missing
    assert not found, found


def test_paths_shown_to_sentence_transformers_work_as_written():
    """``SentenceTransformer("~/...")`` fails (sentence-transformers does not expand ``~``): the docs
    show paths that work."""
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        assert not re.search(r"SentenceTransformer\(\s*[\"']~", text), doc.name


def test_the_config_references_are_generated_and_document_every_key():
    """docs/reference/*.md equal what the typed configs render (issue 34), and every key has a meaning."""
    from benchmarks.reference_docs import PAGES, render

    for name, which in PAGES.items():
        page = (ROOT / "docs" / "reference" / name).read_text(encoding="utf-8")
        assert page == render(which), f"docs/reference/{name} is stale: run python -m benchmarks.reference_docs"
        rows = [line for line in page.splitlines() if line.startswith("| `")]
        assert len(rows) >= 20 and not [r for r in rows if r.endswith("|  |")], name


def test_the_sprachbund_encoder_table_is_generated_from_its_results():
    """The README's sprachbund / all / random block is benchmarks.sprachbund_encoders.render of its JSON."""
    from benchmarks.sprachbund_encoders import BLOCK, render

    result = json.loads((ROOT / "benchmarks" / "results" / "sprachbund_encoders.json").read_text())
    assert _block((ROOT / "README.md").read_text(encoding="utf-8"), BLOCK) == render(result)
    rows = result["summary"]["systems"]
    assert {"sprachbund", "all", "the router's space", "the plain model as its card says"} <= set(rows)
    assert any(name.startswith("random") for name in rows)
    # the rotation's table (other judge sources), once measured, is in docs/results/sprachbund-encoders.md
    for path in sorted((ROOT / "benchmarks" / "results").glob("sprachbund_encoders_*.json")):
        judge = path.stem.split("_")[-1]
        doc = (ROOT / "docs" / "results" / "sprachbund-encoders.md").read_text(encoding="utf-8")
        assert _block(doc, f"{BLOCK}:{judge}") == render(json.loads(path.read_text())), path.name


def test_what_the_default_serves_is_generated_from_its_results():
    """docs/results/sprachbund-encoders.md's blocks on the shipped top layers (gain over the space
    per judge group, cost at start against the space alone) are rendered from their results files."""
    from benchmarks.sprachbund_encoders import SHIPPED_BLOCKS, shipped_blocks

    doc = (ROOT / "docs" / "results" / "sprachbund-encoders.md").read_text(encoding="utf-8")
    blocks = shipped_blocks()
    assert set(blocks) == set(SHIPPED_BLOCKS)
    for name, block in blocks.items():
        assert _block(doc, name) == block, f"{name} is stale: python -c 'import benchmarks.sprachbund_encoders as b; b.render_shipped()'"
