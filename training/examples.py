"""Write the bundled retrieval example (``sprachbund_router/examples``) from the corpus.

Ten sentences in each of twelve languages from the *test* split of the Firefox parallel
sets (never used for layer selection), with their English translations as the corpus.
Run ``python -m training.examples`` after ``sbr train corpus`` to regenerate.
"""

from __future__ import annotations

from pathlib import Path

from sprachbund_router.paths import data_dir
from training.corpus import n_words, read_pairs

EXAMPLE_LANGUAGES = ["de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "pl", "tr", "ko", "vi"]
PER_LANGUAGE = 10


def write_example(corpus_dir: Path, out_dir: Path) -> int:
    """Write ``queries.txt``, ``corpus.txt`` (aligned line by line) and ``languages.txt``."""
    queries, english, langs = [], [], []
    for lang in EXAMPLE_LANGUAGES:
        picked = [(x, e) for x, e in read_pairs(corpus_dir, lang, "test") if 6 <= n_words(e) <= 20]
        picked = [p for p in picked if p[1] not in english][:PER_LANGUAGE]
        for x, e in picked:
            queries.append(x)
            english.append(e)
            langs.append(lang)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "queries.txt").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (out_dir / "corpus.txt").write_text("\n".join(english) + "\n", encoding="utf-8")
    (out_dir / "languages.txt").write_text("\n".join(langs) + "\n", encoding="utf-8")
    return len(queries)


if __name__ == "__main__":
    n = write_example(data_dir() / "corpus", Path(__file__).resolve().parents[1] / "sprachbund_router" / "examples")
    print(f"wrote {n} example pairs")
