"""The router in the ecosystem (issue 11): sentence-transformers' encode keywords, mteb's evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import EXAMPLES

QUERIES = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()
CORPUS = (EXAMPLES / "corpus.txt").read_text(encoding="utf-8").splitlines()


def test_encode_takes_sentence_transformers_keywords(toy_router):
    texts = ["Die Katze sitzt", "Кошка сидит"]
    plain = toy_router.encode(texts)
    st = toy_router.encode(texts, batch_size=1, show_progress_bar=False, normalize_embeddings=True,
                           convert_to_numpy=True, task_metadata=object())
    np.testing.assert_allclose(plain, st, atol=1e-6)
    tensor = toy_router.encode(texts, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tuple(tensor.shape) == plain.shape
    one = toy_router.encode("Die Katze sitzt")
    assert one.shape == (toy_router.get_sentence_embedding_dimension(),)
    sim = toy_router.similarity(plain, plain)  # numpy in, a tensor out, as sentence-transformers does (issue 33)
    assert isinstance(sim, torch.Tensor) and sim.shape == (2, 2) and np.allclose(np.diag(sim.numpy()), 1.0, atol=1e-5)
    assert torch.topk(toy_router.similarity(plain[:1], plain), k=2).indices.tolist() == [[0, 1]]
    assert isinstance(toy_router.similarity_pairwise(plain, plain), torch.Tensor)
    assert toy_router.similarity_fn_name == "cosine"
    with pytest.raises(ValueError, match="prompt"):
        toy_router.encode(texts, prompt_name="query")
    with pytest.raises(ValueError, match="precision"):
        toy_router.encode(texts, precision="float16")


def test_encode_takes_sentence_transformers_6_keywords(toy_router):
    """inputs=, truncate_dim (sliced and renormalised, never ignored), device, precision (issue 33)."""
    from sentence_transformers.quantization import quantize_embeddings

    texts = ["Die Katze sitzt", "Кошка сидит", "The cat sits"]
    full = toy_router.encode(texts)
    np.testing.assert_array_equal(toy_router.encode(inputs=texts), full)
    with pytest.raises(ValueError, match="once"):
        toy_router.encode(texts, inputs=texts)
    cut = toy_router.encode(texts, truncate_dim=8)
    assert cut.shape == (3, 8)
    np.testing.assert_allclose(cut, full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True), atol=1e-6)
    toy_router.truncate_dim = 8  # sentence-transformers' attribute is the default
    try:
        assert toy_router.encode(texts).shape == (3, 8)
    finally:
        toy_router.truncate_dim = None
    with pytest.raises(ValueError, match="truncate_dim"):
        toy_router.encode(texts, truncate_dim=0)
    assert toy_router.encode(texts, convert_to_tensor=True, device="cpu").device.type == "cpu"
    for precision in ("int8", "ubinary"):
        np.testing.assert_array_equal(toy_router.encode(texts, precision=precision), quantize_embeddings(full, precision=precision))


@pytest.mark.slow
def test_mteb_evaluator_scores_the_router_as_retrieve_does(default_router):
    mteb = pytest.importorskip("mteb")
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining

    from sprachbund_router.mteb_model import mteb_model

    class BundledExample(AbsTaskBitextMining):
        metadata = TaskMetadata(
            name="SprachbundBundledExample", type="BitextMining", main_score="accuracy",
            description="The package's bundled example: 120 Firefox strings in 12 languages and their English.",
            reference="https://github.com/mozilla-l10n", dataset={"path": "local", "revision": "local"},
            category="t2t", eval_splits=["test"], eval_langs=["eng-Latn"], date=("2024-01-01", "2024-01-01"),
            dialect=["Written"], domains=[], task_subtypes=[], license="mpl-2.0", annotations_creators="derived",
            modalities=["text"], sample_creation="found", bibtex_citation="",
        )

        def load_data(self, num_proc=None, **kwargs):
            self.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": QUERIES, "sentence2": CORPUS})})
            self.data_loaded = True

    result = mteb.evaluate(mteb_model(default_router), [BundledExample()], cache=None, show_progress_bar=False,
                           co2_tracker=False)
    score = result.task_results[0].scores["test"][0]["accuracy"]
    hits = default_router.retrieve(QUERIES, CORPUS, scoring="cosine")  # mteb ranks by cosine
    direct = np.mean([h.indices[0] == i for i, h in enumerate(hits)])
    assert score == pytest.approx(direct, abs=1e-9) and score >= 0.9


def _cli(*args):
    from typer.testing import CliRunner

    from sprachbund_router.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _top1(stdout: str) -> list[int]:
    rows = [line.split("\t") for line in stdout.strip().splitlines()[1:] if not line.startswith("#")]
    return [int(r[2]) for r in rows if r[1] == "1"]


@pytest.mark.parametrize("ann", ["exact", "faiss"])
def test_index_build_then_retrieve_matches_direct_retrieve(toy_router_dir, tmp_path, ann):
    corpus, queries = tmp_path / "c.txt", tmp_path / "q.txt"
    corpus.write_text("the cat sits on the mat\nthe dog runs\nthe house is red\nthe big green house\n", encoding="utf-8")
    queries.write_text("Die Katze sitzt\nDer Hund läuft\nДом красный\n", encoding="utf-8")
    res = _cli("index", "build", corpus, "-o", tmp_path / "idx", "--model", toy_router_dir, "--ann", ann)
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["size"] == 4 and meta["search"] == ("faiss-ivf" if ann == "faiss" else "exact")
    direct = _cli("retrieve", "-q", queries, "-c", corpus, "--model", toy_router_dir)
    indexed = _cli("retrieve", "-q", queries, "--index", tmp_path / "idx", "--model", toy_router_dir)
    assert direct.exit_code == 0 and indexed.exit_code == 0, indexed.output
    assert _top1(indexed.stdout) == _top1(direct.stdout) and len(_top1(direct.stdout)) == 3


def test_index_dir_integrity_and_identity(toy_router_dir, tmp_path):
    import shutil

    from sprachbund_router import SprachbundRouter
    from sprachbund_router.disk_index import DiskIndex
    from sprachbund_router.errors import CheckpointError

    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sits\nthe dog runs\n", encoding="utf-8")
    assert _cli("index", "build", corpus, "-o", tmp_path / "idx", "--model", toy_router_dir).exit_code == 0
    router = SprachbundRouter.from_pretrained(toy_router_dir)
    index = DiskIndex.load(tmp_path / "idx")
    assert router.retrieve(["the cat"], index)[0].indices[0] == 0
    # another router: same encoder names, other pooling -> refused
    other = tmp_path / "other"
    shutil.copytree(toy_router_dir, other)
    cfg = json.loads((other / "router_config.json").read_text())
    cfg["pooling"] = {"layer": 1, "mode": "cls"}
    (other / "router_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="pooling"):
        SprachbundRouter.from_pretrained(other).retrieve(["the cat"], index)
    # a changed byte in the vectors -> refused at load
    vec = tmp_path / "idx" / "vectors.npy"
    data = bytearray(vec.read_bytes())
    data[-3] ^= 0x10
    vec.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        DiskIndex.load(tmp_path / "idx")
    res = _cli("retrieve", "-q", corpus, "--index", tmp_path / "idx", "--model", toy_router_dir)
    assert res.exit_code == 1 and "damaged" in res.output


@pytest.mark.slow
def test_index_on_default_router_matches_direct_retrieve(default_router, tmp_path):
    res = _cli("index", "build", EXAMPLES / "corpus.txt", "-o", tmp_path / "idx")
    assert res.exit_code == 0, res.output
    direct = _cli("retrieve", "-q", EXAMPLES / "queries.txt", "-c", EXAMPLES / "corpus.txt")
    indexed = _cli("retrieve", "-q", EXAMPLES / "queries.txt", "--index", tmp_path / "idx")
    assert _top1(indexed.stdout) == _top1(direct.stdout) and len(_top1(direct.stdout)) == len(QUERIES)


@pytest.mark.slow
def test_default_router_encoder_folder_is_a_sentence_transformers_model(default_router):
    """The router directory itself (not only an export) holds sentence-transformers folders, truncated
    to the pooled layer, so `SentenceTransformer(router_dir / "encoders/base")` is the router's encoder."""
    from sentence_transformers import SentenceTransformer

    folder = default_router.directory / default_router.config.encoders["base"].path
    config = json.loads((folder / "config.json").read_text())
    layer = default_router.config.pooling.layer
    assert config["num_hidden_layers"] == layer
    assert config.get("truncated_from_layers", 12) == 12
    texts = QUERIES[:16]
    st = SentenceTransformer(str(folder), device="cpu")
    assert st.max_seq_length == default_router.config.encoders["base"].max_length
    got = st.encode(texts)  # the configured prompt (the router's prefix, if any) is the default prompt
    want = default_router.encoder("base").encode(texts)
    assert np.min((got * want).sum(1)) >= 0.9999


@pytest.mark.parametrize(("pooling", "prefix"), [({"layer": -1, "mode": "mean"}, ""), ({"layer": 1, "mode": "cls"}, "der ")])
def test_hub_folders_load_in_sentence_transformers_with_the_router_vectors(toy_router_dir, tmp_path, pooling, prefix):
    import shutil

    from sentence_transformers import SentenceTransformer

    from exporters.hub import plan_export, write_folders
    from sprachbund_router import SprachbundRouter

    root = tmp_path / "router"
    shutil.copytree(toy_router_dir, root)
    cfg = json.loads((root / "router_config.json").read_text())
    cfg["pooling"] = pooling
    for spec in cfg["encoders"].values():
        spec["text_prefix"] = prefix
    (root / "router_config.json").write_text(json.dumps(cfg))
    from safetensors.numpy import save_file  # a second weights file (as an MLM head is saved) is not the encoder

    save_file({"dense.weight": np.zeros((2, 2), np.float32)}, str(root / "encoders" / "west" / "a_mlm_head.safetensors"))
    router = SprachbundRouter.from_pretrained(root)
    folders = write_folders(plan_export(root, "org", "toy", dry_run=True), tmp_path / "dry")
    texts = ["the cat sits on the mat", "der hund", "猫 狗 房子 red big"]
    checked = 0
    for name, spec in router.config.encoders.items():
        repo = next((r for r in folders if r.endswith(name)), None)
        if repo is None:
            continue
        folder = folders[repo]
        assert (folder / "modules.json").is_file() and (folder / "sentence_bert_config.json").is_file()
        st = SentenceTransformer(str(folder), device="cpu")
        got = st.encode(texts)
        want = router.encoder(name).encode(texts)
        assert np.min((got * want).sum(1)) >= 0.9999, name
        assert st.max_seq_length == spec.max_length
        checked += 1
    assert checked >= 2


def test_batch_encoder_for_distributed_engines(toy_router_dir):
    from sprachbund_router import SprachbundRouter
    from sprachbund_router.batch_encoder import BatchEncoder

    texts = ["Die Katze sitzt", "Кошка сидит", "the dog runs"]
    fn = BatchEncoder(model=str(toy_router_dir))
    out = fn({"text": texts, "id": [1, 2, 3]})
    router = SprachbundRouter.from_pretrained(toy_router_dir)
    np.testing.assert_allclose(out["embedding"], router.encode(texts), atol=1e-6)
    assert out["id"] == [1, 2, 3]
    shared = BatchEncoder(model=str(toy_router_dir), encoder="shared")({"text": texts})["embedding"]
    np.testing.assert_allclose(shared, router.build_index(texts, encoder="shared").vectors, atol=1e-6)
    with pytest.raises(ValueError, match="no encoder"):
        BatchEncoder(model=str(toy_router_dir), encoder="nope")


def test_two_routers_keep_their_own_scores_in_one_mteb_cache(toy_router_dir, tmp_path):
    mteb = pytest.importorskip("mteb")
    import shutil

    from datasets import Dataset, DatasetDict
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining

    from sprachbund_router import SprachbundRouter
    from sprachbund_router.mteb_model import mteb_model

    class Tiny(AbsTaskBitextMining):
        metadata = TaskMetadata(
            name="SprachbundTinyExample", type="BitextMining", main_score="accuracy", description="toy",
            reference="https://example.org", dataset={"path": "local", "revision": "local"}, category="t2t",
            eval_splits=["test"], eval_langs=["eng-Latn"], date=("2024-01-01", "2024-01-01"), dialect=["Written"],
            domains=[], task_subtypes=[], license="mpl-2.0", annotations_creators="derived", modalities=["text"],
            sample_creation="found", bibtex_citation="")

        def load_data(self, num_proc=None, **kwargs):
            self.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": QUERIES[:40], "sentence2": CORPUS[:40]})})
            self.data_loaded = True

    other_dir = shutil.copytree(toy_router_dir, tmp_path / "other")
    cfg = json.loads((other_dir / "router_config.json").read_text())
    cfg["pooling"] = {"layer": 1, "mode": "cls"}  # other vectors, same files otherwise
    (other_dir / "router_config.json").write_text(json.dumps(cfg))
    routers = [SprachbundRouter.from_pretrained(toy_router_dir), SprachbundRouter.from_pretrained(other_dir)]
    models = [mteb_model(r) for r in routers]
    metas = [m.mteb_model_meta for m in models]
    assert metas[0].name != metas[1].name and metas[0].revision and metas[0].n_parameters
    def score(model, cache):
        res = mteb.evaluate(model, [Tiny()], cache=cache, show_progress_bar=False, co2_tracker=False)
        return res.task_results[0].scores["test"][0]["f1"]

    alone = [score(m, None) for m in models]
    assert alone[0] != alone[1]  # the two routers' vectors differ
    cache = mteb.cache.ResultCache(tmp_path / "mteb-cache")
    shared = [score(m, cache) for m in models]
    assert shared == pytest.approx(alone, abs=1e-9)  # each its own score, none taken from the other's cache entry


def test_index_folder_opens_with_plain_numpy_and_faiss(toy_router_dir, tmp_path):
    """What docs/guide/usage.md shows: vectors.npy with numpy, ann.faiss with faiss.read_index (nprobe stored
    in the file), texts.jsonl line by line; the folder has the umask's modes, not 0700."""
    import os

    faiss = pytest.importorskip("faiss")
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"sentence number {i} about cats and dogs\n" for i in range(300)), encoding="utf-8")
    res = _cli("index", "build", corpus, "-o", tmp_path / "idx", "--model", toy_router_dir, "--ann", "faiss", "--lang", "en")
    assert res.exit_code == 0, res.output
    folder = tmp_path / "idx"
    meta = json.loads((folder / "index.json").read_text())
    vectors = np.load(folder / "vectors.npy")
    texts = [json.loads(line) for line in (folder / "texts.jsonl").read_text(encoding="utf-8").splitlines()]
    index = faiss.read_index(str(folder / "ann.faiss"))
    assert index.nprobe == meta["ann"]["nprobe"] and vectors.shape == (300, meta["dim"]) and len(texts) == 300
    scores, _ = index.search(vectors[:5], 1)
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)  # each vector finds itself (or an identical one)
    mask = os.umask(0)
    os.umask(mask)
    assert (folder.stat().st_mode & 0o777) == (0o777 & ~mask)
    res = _cli("retrieve", "-q", corpus, "--index", folder, "--model", toy_router_dir, "--nprobe", "2")
    assert res.exit_code == 0, res.output
    # docs/guide/usage.md's block, run as written in the folder above the index
    doc = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "usage.md").read_text(encoding="utf-8")
    block = doc.split("<!-- faiss-example -->\n```python\n", 1)[1].split("```", 1)[0]
    block = block.replace('"org/router", ["Die Katze schläft."]', f'{str(toy_router_dir)!r}, ["sentence number 7 about cats and dogs"]')
    names: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(block, "docs/guide/usage.md", "exec"), names)
    finally:
        os.chdir(cwd)
    assert len(names["texts"]) == 300 and names["ids"].shape == (1, 5)
    np.testing.assert_allclose(names["query_vectors"][0], vectors[7], atol=1e-5)  # the index's own vector of that text
    best = int(names["ids"][0, 0])  # text 7, or one the toy encoder maps onto the same vector
    assert names["scores"][0, 0] > 0.9999 and float(vectors[best] @ vectors[7]) > 0.9999


def test_sentence_transformers_users_get_the_served_vectors_from_a_hub_layout(tmp_path, monkeypatch):
    """The card's two-line recipe: SentenceTransformer(encoder repo) + router.apply_space gives
    router.encode's vectors (cosine >= 0.9999) for every language and for the fallback path."""
    from sentence_transformers import SentenceTransformer

    from exporters.hub import plan_export, seed_cache, write_folders
    from sprachbund_router import SprachbundRouter
    from tests.toy import write_toy_space_router

    src = write_toy_space_router(tmp_path / "src")
    plan = plan_export(src, "org", "toy", dry_run=True)
    write_folders(plan, tmp_path / "dry")
    seed_cache(tmp_path / "dry", tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    router = SprachbundRouter.from_pretrained("org/toy", cache_dir=tmp_path / "hub")
    shared = router.config.shared_encoder
    from huggingface_hub import snapshot_download

    st = SentenceTransformer(snapshot_download(plan.encoder_repos[shared], cache_dir=tmp_path / "hub", local_files_only=True),
                             device="cpu")
    texts = ["Die Katze schläft auf dem Sofa.", "Кошка спит на диване.", "The cat sleeps on the sofa.", "猫在沙发上睡觉。"]
    for lang in router.config.languages:
        want = router.encode_routes(texts, [router.route(texts, lang=lang)[0].__class__(lang, router.config.sprachbund_of(lang),
                                                                                          shared, 1.0)] * len(texts))
        got = router.apply_space(st.encode(texts), lang)
        assert np.min((got * want).sum(1)) >= 0.9999, lang
    fallback = router.encode_routes(texts, [router.route(texts)[0].__class__(None, None, shared, 0.0, True, "test")] * len(texts))
    assert np.min((router.apply_space(st.encode(texts), None) * fallback).sum(1)) >= 0.9999


def test_the_ray_example_runs_as_written(toy_router_dir, tmp_path):
    """docs/guide/usage.md's Ray Data block, with local paths, on ray.init(num_cpus=2): no row lost, the
    vectors equal the router's (every text in the shared encoder's space, as encoder="base" asks)."""
    ray = pytest.importorskip("ray")
    import re
    import subprocess
    import sys
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "usage.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- ray-example -->\n```python\n(.*?)```\n<!-- /ray-example -->", doc, re.S).group(1)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = [f"Die Katze Nummer {i} schläft." if i % 2 else f"The dog number {i} runs." for i in range(600)]
    (corpus / "part.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    from sprachbund_router import SprachbundRouter

    router = SprachbundRouter.from_pretrained(toy_router_dir)
    shared = router.config.shared_encoder
    script = block.replace('MODEL, CORPUS, OUT = "org/router", "corpus/", "vectors/"',
                           f"MODEL, CORPUS, OUT = {str(toy_router_dir)!r}, {str(corpus)!r}, {str(tmp_path / 'vectors')!r}")
    script = script.replace('"encoder": "base"', f'"encoder": {shared!r}')
    assert script != block
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "vectors").to_pandas()
    assert len(table) == len(texts) and sorted(table["text"]) == sorted(texts)
    got = np.stack(table["embedding"].to_numpy()).astype(np.float32)
    routes = router.route(list(table["text"]))
    from dataclasses import replace

    want = router.encode_routes(list(table["text"]), [replace(r, encoder=shared) for r in routes])
    np.testing.assert_allclose(got, want, atol=1e-5)
    del ray


@pytest.mark.slow
def test_sbert_net_examples_run_with_the_router_in_place_of_the_model(default_router):
    """The sentence-transformers documentation's examples, as written there, with the router as
    ``model``: semantic search (with ``torch.topk``), paraphrase mining, hard-negative mining and
    embedding quantisation. They run unchanged and find the translations of the bundled example."""
    from sentence_transformers import util
    from sentence_transformers.util import quantize_embeddings

    model = default_router
    queries, corpus = QUERIES[:60], CORPUS[:60]
    # --- semantic search (sbert.net: Semantic Search, "Manual Implementation" and util.semantic_search)
    corpus_embeddings = model.encode_document(corpus, convert_to_tensor=True)
    query_embeddings = model.encode_query(queries, convert_to_tensor=True)
    right = 0
    for i in range(len(queries)):
        similarity_scores = model.similarity(query_embeddings[i], corpus_embeddings)[0]
        scores, indices = torch.topk(similarity_scores, k=5)
        assert bool(scores[0] >= scores[-1])
        right += int(indices[0]) == i
    hits = util.semantic_search(query_embeddings, corpus_embeddings, top_k=5)
    assert [h[0]["corpus_id"] for h in hits] == [int(torch.argmax(model.similarity(q, corpus_embeddings))) for q in query_embeddings]
    assert right / len(queries) >= 0.9
    # --- paraphrase mining: the best-scoring pairs of the mixed list are translation pairs
    sentences = queries[:20] + corpus[:20]
    pairs = util.paraphrase_mining(model, sentences, show_progress_bar=False)
    top = [(min(i, j), max(i, j)) for _, i, j in pairs[:20]]
    assert sum(j == i + 20 for i, j in top) >= 15, top
    # --- hard negatives for training pairs (util.mine_hard_negatives, as in the training examples)
    from datasets import Dataset

    pairs_ds = Dataset.from_dict({"anchor": queries[:30], "positive": corpus[:30]})
    mined = util.mine_hard_negatives(pairs_ds, model, num_negatives=2, batch_size=16, verbose=False)
    assert set(mined.column_names) == {"anchor", "positive", "negative"} and len(mined) >= 30
    assert all(row["negative"] != row["positive"] and row["negative"] in corpus[:30] for row in mined)
    # --- quantisation (sbert.net: Embedding Quantization): int8 with calibration, and binary
    embeddings = model.encode(corpus)
    calibration = model.encode(CORPUS[60:])
    int8 = quantize_embeddings(embeddings, precision="int8", calibration_embeddings=calibration)
    q8 = quantize_embeddings(model.encode(queries), precision="int8", calibration_embeddings=calibration)
    assert int8.dtype == np.int8 and int8.shape == embeddings.shape
    int8_top1 = float(np.mean((q8.astype(np.int32) @ int8.astype(np.int32).T).argmax(1) == np.arange(len(queries))))
    assert int8_top1 >= 0.85
    binary = quantize_embeddings(embeddings, precision="ubinary")
    assert binary.dtype == np.uint8 and binary.shape == (len(corpus), embeddings.shape[1] // 8)
