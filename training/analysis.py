"""Analysis that justifies the sprachbunds (paper §4): 2-D map, dendrogram, agreement with
language families and with the paper's Table 1, choice of K, and Table 9 cosines.

Families are the paper's own Appendix A (Table 7), so agreement is measured against the
same reference the paper draws on; languages it does not list are reported as "unlisted"
and left out of the family scores.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.config import invert_sprachbunds
from training.sprachbunds import cosine_matrix, prepare

logger = logging.getLogger(__name__)

#: Paper, Appendix A, Table 7 (spelling of the family names normalised).
PAPER_FAMILIES: dict[str, str] = {
    **dict.fromkeys("af als bar cy da de en fy gd is lb nds nl nn no sco sv yi".split(), "Germanic"),
    "el": "Greek", "ja": "Japonic", "ka": "Kartvelian", "sw": "Niger-Congo", "hy": "Armenian",
    "ko": "Koreanic", "sq": "Albanian", "ga": "Celtic",
    **dict.fromkeys("my wuu zh".split(), "Sino-Tibetan"),
    **dict.fromkeys("az kk ky tr tt ug uz".split(), "Turkic"),
    **dict.fromkeys("et fi hu".split(), "Uralic"),
    **dict.fromkeys("km vi war".split(), "Austroasiatic"),
    **dict.fromkeys("kn ml ta te".split(), "Dravidian"),
    **dict.fromkeys("be bg bs cs hr lt lv mk pl ru sh sk sl sr uk".split(), "Slavic"),
    **dict.fromkeys("ceb id jv mg ms su tl".split(), "Austronesian"),
    **dict.fromkeys("lo th".split(), "Tai-Kadai"),
    **dict.fromkeys("an ast br ca es fr gl it la oc pt ro scn eu".split(), "Romance"),
    **dict.fromkeys("eo ia".split(), "Constructed"),
    **dict.fromkeys("am ar arz he so".split(), "Afro-Asiatic"),
    **dict.fromkeys("as bn ckb fa gu hi ku mr ne or pa ps".split(), "Indo-Aryan"),
    **dict.fromkeys("sa sd si ur".split(), "Mongolic"),
}

#: Paper, Table 1: the four representation sprachbunds of XLM-R base.
PAPER_TABLE1: dict[str, list[str]] = {
    "#1": "af als an ast bar br ca ceb da de en eo es el fr fy ga gd gl ia it ku lb nds nl nn no oc pt ro scn sco "
          "sq sv tl ur war".split(),
    "#2": "ar arz bg bs cy fa hi hr id is mg mk ms ps ru sh sl so sr su sw yi".split(),
    "#3": "am as be ckb cs et eu fi he hu ja jv km la lo lt lv mr my ne or pa pl sa sd sk th uk wuu zh".split(),
    "#4": "az bn gu hy ka kk kn ko ky ml mn si ta te tt ug uz vi tr".split(),
}

#: Paper, Table 9 (language embedding similarity) and Table 8 (Ethnologue lexical similarity).
TABLE9_LANGS = ["ca", "en", "fr", "de", "pt", "ro", "ru", "es"]
TABLE9 = np.array([
    [1.00, 0.08, 0.76, 0.22, 0.63, 0.56, 0.23, 0.81],
    [0.08, 1.00, 0.26, 0.38, 0.28, 0.17, 0.31, 0.00],
    [0.76, 0.26, 1.00, 0.49, 0.63, 0.65, 0.47, 0.68],
    [0.22, 0.38, 0.49, 1.00, 0.47, 0.49, 0.59, 0.26],
    [0.63, 0.28, 0.63, 0.47, 1.00, 0.61, 0.45, 0.64],
    [0.56, 0.17, 0.65, 0.49, 0.61, 1.00, 0.48, 0.56],
    [0.23, 0.31, 0.47, 0.59, 0.45, 0.48, 1.00, 0.24],
    [0.81, 0.00, 0.68, 0.26, 0.64, 0.56, 0.24, 1.00],
])


def uriel_group(lineage: Sequence[str] | None) -> str | None:
    """The URIEL family of a lineage; Indo-European is split into its branches (Germanic,
    Italic, Balto-Slavic, Indo-Iranian...), the granularity of the paper's Table 7.
    Languages with no family feature (isolates such as Basque) get ``isolate``."""
    if lineage is None:
        return None
    if not lineage:
        return "isolate"
    if lineage[0] == "Indo-European" and len(lineage) > 1:
        return lineage[1]
    return lineage[0]


def family_of(lang: str) -> str | None:
    """Family of a router code per the paper's Table 7 (``nb`` is listed there as ``no``)."""
    return PAPER_FAMILIES.get({"nb": "no"}.get(lang, lang))


def paper_group_of(lang: str) -> str | None:
    """The paper's Table 1 sprachbund of ``lang``, if listed."""
    lang = {"nb": "no"}.get(lang, lang)
    return next((g for g, m in PAPER_TABLE1.items() if lang in m), None)


def _labels(groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return invert_sprachbunds(groups)


def agreement(groups: Mapping[str, Sequence[str]], reference: Mapping[str, str | None]) -> dict[str, Any]:
    """Purity and adjusted Rand index of ``groups`` against a reference labelling.

    Languages without a reference label are left out (and counted).
    """
    from sklearn.metrics import adjusted_rand_score

    ours = _labels(groups)
    common = sorted(lang for lang in ours if reference.get(lang))
    if len(common) < 2:
        return {"n_languages": len(common), "purity": None, "ari": None}
    majority = 0
    for g in groups:
        refs = [reference[lang] for lang in common if ours[lang] == g]
        if refs:
            majority += Counter(refs).most_common(1)[0][1]
    return {
        "n_languages": len(common),
        "n_left_out": len(ours) - len(common),
        "purity": round(majority / len(common), 4),
        "ari": round(float(adjusted_rand_score([reference[x] for x in common], [ours[x] for x in common])), 4),
    }


def random_baseline_ari(groups: Mapping[str, Sequence[str]], reference: Mapping[str, str | None], n: int = 200) -> float:
    """Mean ARI of random groupings with the same sizes (what chance agreement looks like)."""
    from training.sprachbunds import random_groups

    return round(float(np.mean([agreement(random_groups(groups, seed=s), reference)["ari"] for s in range(n)])), 4)


def table9_comparison(languages: Sequence[str], vectors: np.ndarray, centre: bool = True) -> dict[str, Any]:
    """Our cosines on the paper's Table 9 languages, and their correlation with Table 9."""
    from scipy.stats import pearsonr, spearmanr

    present = [lang for lang in TABLE9_LANGS if lang in languages]
    sims = cosine_matrix(vectors, centre)
    pos = {lang: i for i, lang in enumerate(languages)}
    ours = np.array([[sims[pos[a], pos[b]] for b in present] for a in present])
    ref = TABLE9[np.ix_([TABLE9_LANGS.index(x) for x in present], [TABLE9_LANGS.index(x) for x in present])]
    iu = np.triu_indices(len(present), 1)
    out: dict[str, Any] = {"languages": present, "ours": np.round(ours, 3).tolist()}
    if len(iu[0]) >= 3:
        out["pearson"] = round(float(pearsonr(ours[iu], ref[iu])[0]), 3)
        out["spearman"] = round(float(spearmanr(ours[iu], ref[iu])[0]), 3)
    return out


def plot_map(
    languages: Sequence[str], vectors: np.ndarray, path: Path, centre: bool = True, seed: int = 13,
    families: Mapping[str, str | None] | None = None, family_source: str = "paper Table 7",
) -> Path:
    """t-SNE map of the language vectors (min-max scaled to [0, 1], as in the paper's Figure 2),
    coloured by family (``families``; default: the paper's Table 7)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    x = prepare(vectors, centre)
    xy = TSNE(n_components=2, perplexity=min(30.0, len(x) - 1.0), random_state=seed, init="pca").fit_transform(x)
    xy = (xy - xy.min(0)) / (xy.max(0) - xy.min(0)).clip(min=1e-12)
    fams = [(families.get(lang) if families is not None else family_of(lang)) or "unlisted" for lang in languages]
    fams = [f if fams.count(f) > 1 else "single-language families" for f in fams]
    grey = ("unlisted", "single-language families")
    names = sorted(set(fams), key=lambda f: (f in grey, -fams.count(f), f))
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(11, 9))
    for k, fam in enumerate(names):
        idx = [i for i, f in enumerate(fams) if f == fam]
        color = {"unlisted": "lightgrey", "single-language families": "dimgrey"}.get(fam, cmap(k % 20))
        ax.scatter(xy[idx, 0], xy[idx, 1], s=40, color=color, label=f"{fam} ({len(idx)})")
        for i in idx:
            ax.annotate(languages[i], xy[i], fontsize=8, xytext=(3, 2), textcoords="offset points")
    ax.set_title(f"Language representations (t-SNE), coloured by family ({family_source})")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_dendrogram(
    languages: Sequence[str], vectors: np.ndarray, path: Path, linkage: str = "ward", centre: bool = True, k: int = 4
) -> Path:
    """Dendrogram of the agglomerative clustering (same geometry as the sprachbunds), cut into ``k`` colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.cluster.hierarchy import dendrogram
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    x = prepare(vectors, centre)
    z = scipy_linkage(x, method=linkage, metric="euclidean" if linkage == "ward" else "cosine")
    fig, ax = plt.subplots(figsize=(max(10, len(languages) * 0.16), 6))
    cut = (z[-k, 2] + z[-(k - 1), 2]) / 2 if 2 <= k <= len(z) else None  # between the K-th and (K-1)-th merges
    dendrogram(z, labels=list(languages), leaf_font_size=8, ax=ax, color_threshold=cut)
    ax.set_title(f"Agglomerative clustering of language representations ({linkage} linkage, cosine geometry)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    out_dir: Path,
    languages: Sequence[str],
    vectors: np.ndarray,
    groups: Mapping[str, Sequence[str]],
    pivots: Mapping[str, str],
    k_table: Sequence[Mapping[str, Any]],
    *,
    linkage: str = "ward",
    centre: bool = True,
    title: str = "Representation sprachbunds",
    extra: Mapping[str, Any] | None = None,
    uriel: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Write ``report.md``, ``analysis.json``, ``language_map.png`` and ``dendrogram.png``."""

    out_dir.mkdir(parents=True, exist_ok=True)
    families = {lang: family_of(lang) for lang in languages}
    paper = {lang: paper_group_of(lang) for lang in languages}
    uriel_fam = {lang: uriel_group(uriel.get(lang)) for lang in languages} if uriel else None
    result: dict[str, Any] = {
        "n_languages": len(languages),
        "k": len(groups),
        "linkage": linkage,
        "centred": centre,
        "groups": {g: list(m) for g, m in groups.items()},
        "pivots": dict(pivots),
        "family_agreement": agreement(groups, families),
        "family_agreement_random_ari": random_baseline_ari(groups, families),
        "paper_table1_agreement": agreement(groups, paper),
        "paper_table1_random_ari": random_baseline_ari(groups, paper),
        **({"uriel_agreement": agreement(groups, uriel_fam),
            "uriel_random_ari": random_baseline_ari(groups, uriel_fam),
            "uriel_families": uriel_fam} if uriel_fam else {}),
        "k_selection": list(k_table),
        "table9": table9_comparison(languages, vectors, centre),
        **(extra or {}),
    }
    if uriel_fam:
        plot_map(languages, vectors, out_dir / "language_map.png", centre, families=uriel_fam,
                 family_source="URIEL via lang2vec; Indo-European by branch")
    else:
        plot_map(languages, vectors, out_dir / "language_map.png", centre)
    plot_dendrogram(languages, vectors, out_dir / "dendrogram.png", linkage, centre, k=len(groups))
    (out_dir / "analysis.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    lines = _report_lines(result, languages, groups, pivots, families, k_table, title)
    (out_dir / "report.md").write_text("\n".join(lines))
    return result


def _report_lines(result: Mapping[str, Any], languages: Sequence[str], groups: Mapping[str, Sequence[str]],
                  pivots: Mapping[str, str], families: Mapping[str, str | None], k_table: Sequence[Mapping[str, Any]],
                  title: str) -> list[str]:
    """``report.md`` of :func:`write_report`: the groups, their agreement with references, K, Table 9."""
    from training.languages import language_name

    lines = [f"# {title}", "", f"{len(languages)} languages, K={len(groups)}, {result['linkage']} linkage on "
             f"{'centred ' if result['centred'] else ''}unit-normalised language vectors (cosine geometry).", "",
             "| sprachbund | pivot | n | languages | families (paper Table 7) |", "|---|---|---|---|---|"]
    for g, members in groups.items():
        fam = Counter(families[m] or "unlisted" for m in members).most_common(4)
        lines.append(f"| {g} | {pivots.get(g, '')} ({language_name(pivots.get(g, ''))}) | {len(members)} | "
                     f"{' '.join(members)} | {', '.join(f'{f} {c}' for f, c in fam)} |")
    fa, pa = result["family_agreement"], result["paper_table1_agreement"]
    lines += [
        "", "## Agreement", "",
        "| reference | languages | purity | ARI | ARI of random groups, same sizes |", "|---|---|---|---|---|",
        f"| language family (paper Table 7) | {fa['n_languages']} | {fa['purity']} | {fa['ari']} | "
        f"{result['family_agreement_random_ari']} |",
        f"| paper's sprachbunds (Table 1, XLM-R) | {pa['n_languages']} | {pa['purity']} | {pa['ari']} | "
        f"{result['paper_table1_random_ari']} |",
    ]
    if "uriel_agreement" in result:
        ua = result["uriel_agreement"]
        lines.append(f"| URIEL family (lang2vec; Indo-European by branch) | {ua['n_languages']} | {ua['purity']} | "
                     f"{ua['ari']} | {result['uriel_random_ari']} |")
    lines += [
        "", "## Choice of K (silhouette, cosine)", "", "| K | silhouette | smallest group | largest group |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['k']} | {r['silhouette']} | {r['smallest_group']} | {r['largest_group']} |" for r in k_table]
    t9 = result["table9"]
    lines += ["", "## Table 9 languages: our cosine similarities", "",
              "| | " + " | ".join(t9["languages"]) + " |", "|---" * (len(t9["languages"]) + 1) + "|"]
    for lang, row in zip(t9["languages"], t9["ours"]):
        lines.append(f"| {lang} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    if "pearson" in t9:
        lines += ["", f"Correlation with the paper's Table 9 over the language pairs: Pearson {t9['pearson']}, "
                      f"Spearman {t9['spearman']}."]
    lines += ["", "![language map](language_map.png)", "", "![dendrogram](dendrogram.png)", ""]
    return lines
