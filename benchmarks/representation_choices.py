"""How the choice of language representation and linkage changes the sprachbunds.

    .venv/bin/python -m benchmarks.representation_choices

For the base encoder of the default router and its languages: [CLS] of the last layer (the
paper's choice), masked mean of the last and of the 7th layer; Ward / average / complete
linkage, with and without centring. Prints purity and ARI against the paper's language
families (Table 7) and its Table 1 sprachbunds.
"""

from __future__ import annotations

from sprachbund_router.config import EncoderSpec, PoolingConfig
from sprachbund_router.encoder import SentenceEncoder
from sprachbund_router.paths import data_dir
from training.analysis import agreement, family_of, paper_group_of
from training.base_model import base_model_dir, ensure_base_model
from training.corpus import read_udhr_paragraphs
from training.languages import XLMR_LANGUAGES
from training.sprachbunds import cluster_languages, compute_language_vectors


def main() -> None:
    ensure_base_model()
    enc = SentenceEncoder.from_pretrained(base_model_dir(), PoolingConfig(-1, "mean"), EncoderSpec(path="base"))
    texts = {lang: read_udhr_paragraphs(data_dir() / "corpus", lang) for lang in sorted(XLMR_LANGUAGES)}
    texts = {lang: t for lang, t in texts.items() if len(t) >= 20}
    print("| representation | linkage | centred | family purity | family ARI | Table 1 purity | Table 1 ARI |")
    print("|---|---|---|---|---|---|---|")
    for label, mode, layer in (("last-layer [CLS] (paper)", "cls", -1), ("mean, last layer", "mean", -1),
                               ("mean, hidden_states[7]", "mean", 7)):
        lv = compute_language_vectors(enc, texts, mode=mode, layer=layer, max_sentences=200, min_sentences=20)  # type: ignore[arg-type]
        fam = {lang: family_of(lang) for lang in lv.languages}
        paper = {lang: paper_group_of(lang) for lang in lv.languages}
        for linkage in ("ward", "average", "complete"):
            for centre in (True, False):
                g = cluster_languages(lv.languages, lv.vectors, 4, linkage, centre)  # type: ignore[arg-type]
                fa, pa = agreement(g, fam), agreement(g, paper)
                print(f"| {label} | {linkage} | {centre} | {fa['purity']} | {fa['ari']} | {pa['purity']} | {pa['ari']} |")


if __name__ == "__main__":
    main()
