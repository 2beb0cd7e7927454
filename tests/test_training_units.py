"""Training building blocks on hand-made inputs with known answers."""

import numpy as np
import pytest

from training.corpus import n_words
from training.languages import normalize_code
from training.sources import _parse_ftl, _parse_properties, clean_message
from training.sprachbunds import (
    cluster_languages,
    cosine_matrix,
    k_selection,
    pivots,
    random_groups,
)


def _synthetic(seed=0):
    """Three well-separated families around random directions, plus a shared offset."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 3
    langs, vecs, truth = [], [], {}
    for g, n in enumerate((5, 4, 3)):
        for i in range(n):
            lang = f"l{g}{i}"
            langs.append(lang)
            vecs.append(centres[g] + rng.normal(scale=0.3, size=16) + 50.0)
            truth[lang] = g
    return langs, np.array(vecs), truth


@pytest.mark.parametrize("linkage", ["ward", "average", "complete"])
def test_clustering_recovers_known_groups(linkage):
    langs, vecs, truth = _synthetic()
    groups = cluster_languages(langs, vecs, k=3, linkage=linkage, centre=True)
    assert list(groups) == ["sb1", "sb2", "sb3"]
    assert [len(m) for m in groups.values()] == [5, 4, 3]
    for members in groups.values():
        assert len({truth[m] for m in members}) == 1
    assert cluster_languages(langs, vecs, k=3, linkage=linkage) == groups  # deterministic


def test_centring_matters_for_anisotropic_vectors():
    _, vecs, _ = _synthetic()
    raw = cosine_matrix(vecs, centre=False)
    assert raw.min() > 0.9  # the shared offset makes every pair look alike
    centred = cosine_matrix(vecs, centre=True)
    assert centred.min() < 0


def test_pivot_is_argmax_of_summed_cosine():
    langs = ["a", "b", "c"]
    vecs = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    assert pivots({"g": langs}, langs, vecs, centre=False) == {"g": "b"}


def test_random_groups_keep_sizes_and_languages():
    groups = {"sb1": ["a", "b", "c"], "sb2": ["d", "e"], "sb3": ["f"]}
    rnd = random_groups(groups, seed=1)
    assert [len(v) for v in rnd.values()] == [3, 2, 1]
    assert sorted(x for v in rnd.values() for x in v) == list("abcdef")
    assert random_groups(groups, seed=1) == rnd


def test_k_selection_prefers_true_k():
    _, vecs, _ = _synthetic()
    table = k_selection(vecs, ks=range(2, 7))
    best = max(table, key=lambda r: r["silhouette"])
    assert best["k"] == 3


def test_clean_message():
    assert clean_message("{ -brand-short-name } kann %S nicht öffnen.") == "Firefox kann nicht öffnen."
    assert clean_message("{ $count -> [one] a *[other] b }") is None
    assert clean_message("<b>Fett</b> &amp; mehr") == "Fett & mehr"
    assert clean_message("%S") is None


def test_parse_ftl_and_properties():
    ftl = (
        "# comment\nmsg-a = Hallo Welt\nmsg-b =\n    .label = Öffnen\n    .accesskey = f\n"
        "msg-c = Zeile eins\n    Zeile zwei\n-term = Marke\n"
    )
    parsed = _parse_ftl(ftl)
    assert parsed == {"msg-a": "Hallo Welt", "msg-b": "", "msg-b.label": "Öffnen", "msg-b.accesskey": "f",
                      "msg-c": "Zeile eins Zeile zwei"}
    props = _parse_properties("# c\nkey.one = Gr\\u00fc\\u00dfe\nkey.two=x=y\n")
    assert props == {"key.one": "Grüße", "key.two": "x=y"}


def test_codes_and_word_counts():
    assert [normalize_code(t) for t in ("pt-BR", "zh-CN", "nb-NO", "arb", "fil", "en-GB")] == ["pt", "zh", "nb", "ar", "tl", "en"]
    assert n_words("Das ist ein Test") == 4
    assert n_words("今天天气很好我们去公园") == 3
