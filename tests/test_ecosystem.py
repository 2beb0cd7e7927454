"""The router in the ecosystem (issue 11): sentence-transformers' encode keywords, mteb's evaluator."""

from __future__ import annotations

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
    sim = toy_router.similarity(plain, plain)
    assert sim.shape == (2, 2) and np.allclose(np.diag(sim), 1.0, atol=1e-5)
    assert toy_router.similarity_fn_name == "cosine"
    with pytest.raises(ValueError, match="prompt"):
        toy_router.encode(texts, prompt_name="query")
    with pytest.raises(ValueError, match="precision"):
        toy_router.encode(texts, precision="int8")


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
    hits = default_router.retrieve(QUERIES, CORPUS)
    direct = np.mean([h.indices[0] == i for i, h in enumerate(hits)])
    assert score == pytest.approx(direct, abs=1e-9) and score >= 0.9
