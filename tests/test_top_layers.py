"""Sprachbund encoders on shared lower layers (issue 31) and the one served-vector definition they
are trained through (issue 34): the runtime's steps on numpy and torch, the protocol's serving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sprachbund_router.space import SERVE_STEPS, SpaceSpec, VectorSpace, unit
from training.loso import Choice, Data, Experiment, Fitted

DIM = 8


def _space(rows: str = "without own mean") -> VectorSpace:
    rng = np.random.default_rng(0)
    means = {"lang:de": rng.normal(size=DIM) * 0.1, "sprachbund:g1": rng.normal(size=DIM) * 0.1,
             "global": rng.normal(size=DIM) * 0.1}
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    u, _ = np.linalg.qr(rng.normal(size=(DIM, 2)))
    spec = SpaceSpec(path="s", sprachbund_maps={"g1": "g1"}, fallback_map=None, subspace_rows=rows)
    return VectorSpace(spec, means, {"g1": q}, {"de": "g1", "nl": "g1", "en": "g0"}, subspace=u)


def test_the_served_vector_is_one_ordered_list_of_steps():
    assert [name for name, _ in SERVE_STEPS] == ["normalise", "centre", "remove subspace", "map", "normalise"]


def test_torch_rows_get_the_numpy_vectors_and_gradients_flow_through_the_space():
    space = _space()
    rng = np.random.default_rng(1)
    v = rng.normal(size=(5, DIM)).astype(np.float32)
    langs = ["de", "nl", "en", None, "de"]
    want = space.serve(v, langs)
    t = torch.from_numpy(v.copy()).requires_grad_(True)
    got = space.serve(t, langs)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-6)
    got.sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all() and float(t.grad.abs().sum()) > 0


def test_rows_without_a_mean_are_the_plain_steps():
    space = _space(rows="all")
    v = np.random.default_rng(2).normal(size=(3, DIM)).astype(np.float32)
    out = space.serve(v, [None, None, None])  # fallback rows: global mean, subspace, no map
    u = space.subspace
    x = unit(v) - space.means["global"]
    np.testing.assert_allclose(out, unit(x - (x @ u) @ u.T), atol=1e-6)


def _toy_experiment() -> tuple[Experiment, dict[str, str]]:
    """Three languages in two sprachbunds, with unit 'vectors' that are a hash of the text."""
    sprachbund_of = {"en": "g0", "de": "g1", "nl": "g1", "ru": "g2"}
    rows: dict = {}
    for s in ("a", "b"):
        rows[s] = {"train": {}, "dev": {}, "test": {}}
        for lang in ("de", "nl", "ru"):
            for split in ("train", "dev", "test"):
                rows[s][split][lang] = [(f"{s}-{lang}-{split}-{i}", f"{s}-en-{split}-{i}") for i in range(40)]
    data = Data(rows, {"a": "interface", "b": "interface"}, sprachbund_of)

    class Hashed:
        def get(self, texts, layer):
            out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=DIM) for t in texts])
            return unit(out.astype(np.float32))

    return Experiment(data, {"": Hashed()}), sprachbund_of


@pytest.mark.parametrize("choice", [
    Choice(centring=False), Choice(centring=True, missing_mean="global"),
    Choice(centring=True, subspace_rank=2, subspace_rows="all", maps="all"),
    Choice(centring=True, subspace_rank=2, subspace_rows="without own mean", maps="sprachbund", shrink_group=0.0),
    Choice(centring=True, maps="language", shrink_group=1.0, shrink_language=4.0),
    Choice(centring=False, subspace_rank=2, subspace_rows="without own mean", maps="random"),
])
def test_the_protocol_serves_with_the_runtime_space_bit_for_bit(choice):
    exp, sprachbund_of = _toy_experiment()
    fitted = exp.fit(choice, ["a", "b"])
    space = fitted.space(choice, sprachbund_of)
    v = exp.vectors[""].get([f"q{i}" for i in range(7)], 12)
    for lang in ("de", "ru", "en"):
        assert np.array_equal(exp.serve(v, lang, fitted, choice), space.serve(v, [lang] * len(v)))
        # and the runtime's space saved and loaded (what a router ships) serves the same bits
    assert isinstance(fitted, Fitted)


def test_top_layers_on_cached_lower_states_equal_the_base_and_train_and_resume(tmp_path, default_router):
    from sprachbund_router.config import EncoderSpec, PoolingConfig
    from sprachbund_router.encoder import SentenceEncoder
    from training.base_model import base_model_dir
    from training.top_layers import LowerStates, TopLayers, TopLayerSettings, load_top_layers, train_top_layers

    enc = SentenceEncoder.from_pretrained(base_model_dir(), PoolingConfig(-1, "mean"), EncoderSpec(path="b", max_length=256))
    pairs = [("Datei öffnen", "de", "Open file"), ("Datei speichern", "de", "Save file"), ("Открыть файл", "ru", "Open file"),
             ("Сохранить файл", "ru", "Save file"), ("Drucken", "de", "Print"), ("Печать", "ru", "Print")]
    texts = sorted({t for x, _, e in pairs for t in (x, e)})
    lower = LowerStates(enc, 10, 64, tmp_path / "lower")
    lower.ensure(texts)
    again = LowerStates(enc, 10, 64, tmp_path / "lower")  # read back from its parts
    assert set(again.states) == set(lower.states)
    top = TopLayers(enc, 10)
    np.testing.assert_allclose(top.encode(again, texts), enc.encode(texts), atol=1e-4)
    teacher = {e: enc.encode([e])[0] for _, _, e in pairs}
    scores: list[float] = []

    def dev(model):
        v = model.encode(lower, [x for x, _, _ in pairs])
        t = np.stack([teacher[e] for _, _, e in pairs])
        scores.append(float((v * t).sum(1).mean()))
        return scores[-1]

    settings = TopLayerSettings(first_layer=10, steps=6, batch_size=4, lr=1e-4, eval_every=3, loss="mse")
    serve = lambda v, langs: v  # noqa: E731 - no space: the teacher's own vectors
    record = train_top_layers("g", enc, lower, pairs, teacher, serve, dev, settings, tmp_path / "g")
    assert [p["step"] for p in record["curve"]] == [0, 3, 6]
    assert record["best_dev"] == max(p["dev"] for p in record["curve"]) and record["best_dev"] > record["curve"][0]["dev"]
    assert record["steps_per_second"] > 0 and record["peak_rss_mb"] > 0
    trained = load_top_layers(enc, tmp_path / "g")
    assert not np.allclose(trained.encode(lower, texts), top.encode(lower, texts))
    calls = len(scores)
    assert train_top_layers("g", enc, lower, pairs, teacher, serve, dev, settings, tmp_path / "g") == record
    assert len(scores) == calls  # a finished model is reused, not retrained


def test_the_comparison_summary_reports_means_paired_differences_and_a_plain_finding():
    from benchmarks.sprachbund_encoders import finding, groupings, render, summarise

    rng = np.random.default_rng(0)
    kinds = {"a": "interface", "b": "interface", "p": "prose"}
    langs = ["de", "ru", "hi", "sw"]
    base = {s: {lang: rng.random(60) < 0.6 for lang in langs} for s in kinds}
    better = {s: {lang: base[s][lang] | (rng.random(60) < 0.3) for lang in langs} for s in kinds}
    hits = {"the plain model as its card says": base, "sprachbund": better, "all": base, "random (seed 0)": base,
            "the router's space": base}
    summary = summarise(hits, kinds, "the plain model as its card says", "sprachbund", ["sw"])
    rows = summary["systems"]
    assert rows["all"]["interface"] == pytest.approx(100 * np.mean([base[s][lang].mean() for s in "ab" for lang in langs]), abs=0.01)
    gain = rows["all"]["interface: sprachbund - this"]
    assert gain == pytest.approx(rows["sprachbund"]["interface"] - rows["all"]["interface"], abs=0.02) and gain > 0
    assert rows["all"]["interface: standard error"] > 0 and rows["sprachbund"]["interface: sprachbund - this"] == 0
    assert summary["without_libreoffice"] == ["sw"] and len(summary["lowest_quarter"]) == 1
    said = finding(summary)
    assert "beat all" in said and "beat random (seed 0)" in said
    table = render({"summary": {**summary, "finding": said}, "judge": list(kinds), "machine": "test",
                    "settings": {"top_layers": 4, "steps": 10, "batch_size": 8, "loss": "contrastive"}, "finding": said})
    assert table.count("\n|") >= 6 and "sprachbund minus this" in table
    groups = groupings({"en": "g0", "de": "g1", "nl": "g1", "ru": "g2"})
    sizes = sorted(len([lang for lang, g in groups["sprachbund"].items() if g == x]) for x in set(groups["sprachbund"].values()))
    for seed in ("random (seed 0)", "random (seed 1)"):
        part = groups[seed]
        assert sorted(len([lang for lang, g in part.items() if g == x]) for x in set(part.values())) == sizes
    assert set(groups["all"].values()) == {"all"} and "en" not in groups["all"]
