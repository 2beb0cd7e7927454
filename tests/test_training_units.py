"""Training building blocks on hand-made inputs with known answers."""

import json
import shutil
from pathlib import Path

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


def _write_mo(path, messages):
    """A GNU gettext .mo file (little endian) from {msgid: msgstr}."""
    import struct

    messages = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(messages)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(messages[k].encode() + b"\0" for k in keys)
    n, start = len(keys), 7 * 4 + 16 * len(keys)
    pos_i, pos_s = start, start + len(ids)
    table_i, table_s = [], []
    for k in keys:
        table_i += [len(k.encode()), pos_i]
        pos_i += len(k.encode()) + 1
        table_s += [len(messages[k].encode()), pos_s]
        pos_s += len(messages[k].encode()) + 1
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + struct.pack(f"<{2 * n}I", *table_i) + struct.pack(f"<{2 * n}I", *table_s) + ids + strs)


def test_help_pages_align_on_paragraph_ids(tmp_path):
    """Help paragraphs pair up by the ids two languages' copies of a page share: markup removed,
    entities decoded, a line break kept as a space, the first copy of a repeated id, pages or ids
    one side lacks left out; the out-of-domain set is read back as (text, English)."""
    from training.libreoffice import help_pairs, read_help_page, read_help_set

    en, de = tmp_path / "en-US" / "text" / "swriter", tmp_path / "de" / "text" / "swriter"
    en.mkdir(parents=True)
    de.mkdir(parents=True)
    (en / "a.html").write_text(
        '<h1 id="hd_id1" class="heading">Tables</h1>'
        '<p id="par_id2" class="paragraph"><span class="avis">In the <span class="emph">General</span> section, '
        'choose &quot;Insert&quot;.</span></p>'
        '<p id="par_id3">First line<br/>second line</p><p id="par_id2">a repeated id</p>'
        '<p id="par_id4">Only in English</p><p class="x">no id</p>', encoding="utf-8")
    (de / "a.html").write_text(
        '<h1 id="hd_id1">Tabellen</h1><p id="par_id2">Wählen Sie im Bereich <span>Allgemein</span> '
        '&quot;Einfügen&quot;.</p><p id="par_id3">Erste Zeile<br>zweite Zeile</p>', encoding="utf-8")
    (en / "only-en.html").write_text('<p id="par_id9">Nothing to pair with</p>', encoding="utf-8")
    page = read_help_page(en / "a.html")
    assert page["par_id2"] == 'In the General section, choose "Insert".'
    assert page["par_id3"] == "First line second line" and "no id" not in page.values()
    rows = help_pairs(tmp_path / "en-US", tmp_path / "de")
    assert rows == [("text/swriter/a.html#hd_id1", "Tabellen", "Tables"),
                    ("text/swriter/a.html#par_id2", 'Wählen Sie im Bereich Allgemein "Einfügen".',
                     'In the General section, choose "Insert".'),
                    ("text/swriter/a.html#par_id3", "Erste Zeile zweite Zeile", "First line second line")]
    out = tmp_path / "corpus" / "extra" / "libreoffice-help"
    out.mkdir(parents=True)
    (out / "de-en.tsv").write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    assert read_help_set(tmp_path / "corpus", "de")[0] == ("Tabellen", "Tables")
    assert read_help_set(tmp_path / "corpus", "fr") == []


def test_libreoffice_pairs_never_reach_held_out_text(tmp_path):
    """LibreOffice catalogues become training pairs: context keys stripped, accelerators removed,
    and nothing that equals a dev / test / out-of-domain text (English or translation), nothing
    left in English, no duplicates."""
    from training.libreoffice import build_pairs, package_languages, read_catalogue

    corpus = tmp_path / "corpus"
    (corpus / "parallel").mkdir(parents=True)
    (corpus / "ood").mkdir()
    (corpus / "parallel" / "de-en.tsv").write_text(
        "k1\tDatei öffnen\tOpen file\ttest\n"
        "k2\tSpeichern unter\tSave as\ttrain\n"
        "k4\tTabelle jetzt hier einfügen\tInsert the table here now\ttrain\n"
        "k3\tDas Dokument wurde gespeichert\tThe document was saved\tdev\n", encoding="utf-8")
    (corpus / "ood" / "de-en.tsv").write_text("v1\tWiedergabe starten\tStart playback\n", encoding="utf-8")
    mo = tmp_path / "x" / "de" / "LC_MESSAGES" / "sw.mo"
    _write_mo(mo, {
        "STR_OPEN\x04Open File": "Datei öffnen",                     # English equals a test row's (normalised)
        "STR_PLAY\x04Start playback!": "Abspielen beginnen",         # English equals an out-of-domain row's
        "STR_SAVED\x04The file was stored": "Das Dokument wurde gespeichert",  # translation equals a dev row's
        "STR_SAVE\x04~Save As...": "Speichern ~unter...",             # kept: train rows are fair game
        "STR_COL\x04Column %COLUMNNUMBER of $(ARG1)": "Spalte %COLUMNNUMBER von $(ARG1)",  # placeholders go
        "STR_INSERT\x04Insert a new table into the document": "Eine neue Tabelle in das Dokument einfügen",
        "STR_INSERT2\x04Insert a new table into the document.": "Neue Tabelle einfügen",  # duplicate English
        "STR_EN\x04Insert the table here": "Insert the table here now",  # left in English
    })
    rows = read_catalogue(mo)
    assert ("sw:STR_SAVE", "Save As...", "Speichern unter...") in rows  # context stripped, accelerators removed
    counts = build_pairs(corpus, {"de": [mo]}, corpus / "extra" / "libreoffice")
    kept = [line.split("\t") for line in (corpus / "extra" / "libreoffice" / "de-en.tsv").read_text().splitlines()]
    assert sorted(en for _, _, en in kept) == ["Column of", "Insert a new table into the document", "Save As..."]
    assert counts["de"]["pairs"] == 3 and counts["de"]["dropped"] == {"held-out text": 3, "duplicate": 1, "left in English": 1}
    assert package_languages(["libreoffice-l10n-de", "libreoffice-l10n-pt-br", "libreoffice-l10n-zh-cn",
                              "libreoffice-l10n-kmr", "libreoffice-l10n-in"]) == {
        "de": "libreoffice-l10n-de", "zh": "libreoffice-l10n-zh-cn", "ku": "libreoffice-l10n-kmr"}


def test_stage_cache_reuses_another_builds_result_only_for_the_same_key(tmp_path: Path) -> None:
    from training.pipeline import StageCache

    first = StageCache(tmp_path / "build" / "default-router", tmp_path / "build")
    first.work.mkdir(parents=True)
    (first.work / "language_id").mkdir()
    (first.work / "language_id" / "ngram.safetensors").write_bytes(b"weights")
    first.put("identifier", "k1", {"languages": 3})
    second = StageCache(tmp_path / "build" / "adapters-cpu", tmp_path / "build")
    second.work.mkdir(parents=True)
    assert second.get("identifier", "other-key", ["language_id/ngram.safetensors"]) is None
    assert second.get("identifier", "k1", ["language_id/missing.bin"]) is None  # its files must be there too
    assert second.get("identifier", "k1", ["language_id/ngram.safetensors"]) == {"languages": 3}
    assert (second.work / "language_id" / "ngram.safetensors").read_bytes() == b"weights"
    assert json.loads((second.work / "identifier.json").read_text()) == {"key": "k1", "value": {"languages": 3}}
    alone = StageCache(tmp_path / "elsewhere")  # a build outside the package cache looks only at its own directory
    alone.work.mkdir()
    assert alone.get("identifier", "k1") is None


def test_paired_bootstrap_mean_and_interval():
    from training.metrics import paired_bootstrap

    a = {"de": 90.0, "fr": 80.0, "ru": 70.0, "xx": 1.0}
    same = paired_bootstrap(a, {k: v - 2.0 for k, v in a.items() if k != "xx"} | {"yy": 5.0})
    assert same == {"mean_difference": 2.0, "ci95": [2.0, 2.0], "units": 3}  # only shared units; constant gap
    spread = paired_bootstrap({"a": 1.0, "b": 3.0}, {"a": 0.0, "b": 0.0})
    assert spread["mean_difference"] == 2.0 and 1.0 <= spread["ci95"][0] < 2.0 < spread["ci95"][1] <= 3.0
    with pytest.raises(ValueError, match="share no scored unit"):
        paired_bootstrap({"a": 1.0}, {"b": 1.0})


def test_shipped_language_vectors_are_taken_only_for_the_same_inputs_and_encoder(tmp_path):
    """The language-vector stage takes the copy shipped in the package only when its stage key and
    the encoder's probe vectors both match; otherwise the stage computes them."""
    from sprachbund_router.config import EncoderSpec, PoolingConfig, load_language_vectors, save_language_vectors
    from sprachbund_router.encoder import SentenceEncoder
    from tests.toy import write_toy_encoder
    from training.shipped import ship_language_vectors, shipped_language_vectors

    def encoder(seed):
        path = write_toy_encoder(tmp_path / f"enc{seed}", seed)
        return SentenceEncoder.from_pretrained(path, PoolingConfig(layer=-1, mode="mean"), EncoderSpec(path=str(path), max_length=64))

    build = tmp_path / "build"
    build.mkdir()
    vectors = np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32)
    save_language_vectors(build, ["de", "fr", "ru"], vectors, pooling="cls", layer=-1)
    (build / "language_vectors.json").write_text(json.dumps({"key": "k1", "value": {"n_sentences": {"de": 20}, "skipped": {}}}))
    artifacts = tmp_path / "artifacts"
    same = encoder(1)
    ship_language_vectors(build, same, "cls", artifacts=artifacts)

    work = tmp_path / "work"
    assert shipped_language_vectors("k2", same, "cls", work, artifacts=artifacts) is None  # other inputs
    assert shipped_language_vectors("k1", encoder(2), "cls", work, artifacts=artifacts) is None  # another encoder
    assert shipped_language_vectors("k1", same, "mean", work, artifacts=artifacts) is None  # other pooling
    assert not (work / "language_vectors.safetensors").exists()
    report = shipped_language_vectors("k1", same, "cls", work, artifacts=artifacts)
    assert report == {"n_sentences": {"de": 20}, "skipped": {}, "source": "shipped with the package (default-language-vectors.safetensors)"}
    langs, got = load_language_vectors(work)
    assert langs == ["de", "fr", "ru"] and np.array_equal(got, vectors)


def test_the_shipped_language_vectors_are_those_the_default_build_computes(tmp_path, default_router):
    """The package's copy of the default preset's language vectors: recomputed here for a few
    languages from the corpus with the base encoder, as the stage computes them (the build itself
    takes the shipped copy, so comparing with the build's file would compare the copy with itself)."""
    from sprachbund_router.config import load_language_vectors
    from sprachbund_router.paths import data_dir
    from training.corpus import read_udhr_paragraphs
    from training.pipeline import DEFAULT_PRESET, load_base_encoder_for, load_build_config
    from training.space import SHIPPED_DIR
    from training.sprachbunds import compute_language_vectors

    config = load_build_config(DEFAULT_PRESET)
    meta = json.loads((SHIPPED_DIR / "default-language-vectors.json").read_text())
    shutil.copyfile(SHIPPED_DIR / "default-language-vectors.safetensors", tmp_path / "language_vectors.safetensors")
    langs, shipped = load_language_vectors(tmp_path)
    assert langs == meta["languages"]
    some = ["de", "hi", "sw"]
    texts = {lang: read_udhr_paragraphs(data_dir() / "corpus", lang) for lang in some}
    lv = compute_language_vectors(load_base_encoder_for(config), texts, mode=config.vector_mode, layer=-1,
                                  max_sentences=config.vector_max_sentences, min_sentences=config.min_sentences)
    for lang, fresh in zip(lv.languages, lv.vectors):
        row = shipped[langs.index(lang)]
        assert float(row @ fresh / np.linalg.norm(row) / np.linalg.norm(fresh)) > 0.9999, lang


def test_a_changed_shipped_artifact_is_refused_by_its_checksum(tmp_path, default_router, caplog):
    """Issue 33: a negated map or two swapped rows in a shipped file are refused (sha256 recorded at
    shipping), and so is a space that no longer serves its recorded reference vectors."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from sprachbund_router.paths import data_dir
    from training.files import file_sha256
    from training.pipeline import DEFAULT_PRESET, load_build_config
    from training.shipped import shipped_language_vectors
    from training.space import SHIPPED_DIR, SPACE_FILE, shipped_space, space_key

    config = load_build_config(DEFAULT_PRESET)
    cfg = default_router.config
    encoder = default_router.encoder("base")
    art = tmp_path / "artifacts"
    shutil.copytree(SHIPPED_DIR, art)
    key = space_key(config.space, cfg.sprachbunds, data_dir() / "corpus")
    spec_args = {"path": SPACE_FILE, "centring": True, "missing_mean": config.space.missing_mean,
                 "fallback_mean": config.space.fallback_mean, "anchor": config.space.anchor}
    where = cfg.language_to_sprachbund
    assert shipped_space(key, encoder, where, spec_args, art) is not None  # as shipped: taken
    tensors = load_file(str(art / "default-space.safetensors"))
    name = next(k for k in tensors if k.startswith("map."))
    tensors[name] = -tensors[name]
    with safe_open(str(art / "default-space.safetensors"), framework="numpy") as h:
        metadata = h.metadata()
    save_file(tensors, str(art / "default-space.safetensors"), metadata=metadata)  # same metadata, one map negated
    with caplog.at_level("WARNING"):
        assert shipped_space(key, encoder, where, spec_args, art) is None
    assert "sha256" in caplog.text
    # the checksum updated to the changed file: the recorded reference vectors still refuse it
    meta = json.loads((art / "default-space.json").read_text())
    meta["sha256"] = file_sha256(art / "default-space.safetensors")
    (art / "default-space.json").write_text(json.dumps(meta))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert shipped_space(key, encoder, where, spec_args, art) is None
    assert "reference texts" in caplog.text
    # language vectors: two rows swapped
    vec = load_file(str(art / "default-language-vectors.safetensors"))
    name = next(iter(vec))
    rows = vec[name].copy()
    rows[[0, 1]] = rows[[1, 0]]
    with safe_open(str(art / "default-language-vectors.safetensors"), framework="numpy") as h:
        metadata = h.metadata()
    save_file({**vec, name: rows}, str(art / "default-language-vectors.safetensors"), metadata=metadata)
    lv_meta = json.loads((art / "default-language-vectors.json").read_text())
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert shipped_language_vectors(lv_meta["key"], encoder, config.vector_mode, tmp_path / "work", artifacts=art) is None
    assert "sha256" in caplog.text
