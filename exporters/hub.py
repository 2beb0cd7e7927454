"""Publish a router to the Hugging Face Hub: one repo per encoder plus the router's own.

``plan_export`` checks everything before anything is written or uploaded (a router
directory, valid repo names, a token unless dry-run). ``write_folders`` builds exactly the
folders that would be uploaded; ``upload`` pushes the encoder repos first, then writes the
router config with their commit hashes pinned and pushes the router. ``seed_cache`` lays
dry-run folders out as huggingface_hub's cache, so they load by repo id with
``HF_HUB_OFFLINE=1`` exactly as downloaded repos would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sprachbund_router.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from sprachbund_router.backend import LEGACY_ONNX_FILES, ONNX_DIR, ONNX_EXPORT_INFO, ONNX_FILES
from sprachbund_router.checkpoint import read_json_object
from sprachbund_router.config import LANGUAGE_VECTORS_NAME, EncoderSpec, RouterConfig
from sprachbund_router.errors import CheckpointError
from sprachbund_router.language_id import NGRAM_FILE
from sprachbund_router.onnx_encoder import pad_token_id
from sprachbund_router.st_layout import write_st_adapter_folder, write_st_folder
from sprachbund_router.staging import StagedDirectory, link_or_copy, link_tree
from sprachbund_router.top_layers import TOP_LAYERS_CONFIG, TOP_LAYERS_WEIGHTS, is_top_layers, write_merged
from sprachbund_router.validation import confined, writable_inside

logger = logging.getLogger(__name__)

ENCODER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "training_metrics.json", "conversion.json")
REPOS_FILE = "repos.json"


class ExportError(ValueError):
    """The export cannot go ahead (nothing has been uploaded)."""


@dataclass
class HubPlan:
    """What will be published: repo id -> source, and which encoders each repo serves."""

    router_dir: Path
    config: RouterConfig
    router_repo: str
    encoder_repos: dict[str, str] = field(default_factory=dict)  # encoder name -> repo id
    encoder_dirs: dict[str, Path] = field(default_factory=dict)  # repo id -> directory (bases before adapters)
    adapter_bases: dict[str, str] = field(default_factory=dict)  # adapter repo id -> its base's repo id


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "router"


def plan_export(router_dir: str | Path, org: str, name: str | None = None, *, dry_run: bool = False,
                token: str | None = None) -> HubPlan:
    """Validate the export and decide the repositories.

    Raises:
        ExportError: not a router directory, invalid repo names, missing encoder weights, or
            no Hub token when uploading.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    router_dir = Path(router_dir)
    try:
        config = RouterConfig.load(router_dir)
    except CheckpointError as err:
        raise ExportError(f"{router_dir} is not a router directory: {err}") from err
    name = name or _slug(router_dir.resolve().name)
    router_repo = f"{org}/{name}"
    plan = HubPlan(router_dir, config, router_repo)
    served = config.served_encoders()
    served |= {config.encoders[e].adapter_base for e in served if config.encoders[e].adapter_base}  # type: ignore[misc]
    by_dir: dict[Path, str] = {}
    adapters = sorted(e for e in served if config.encoders[e].adapter_base)
    for enc in [*sorted(served - set(adapters)), *adapters]:  # a base's repo before its adapters'
        spec = config.encoders[enc]
        if spec.path is None:  # already on the Hub: keep pointing there
            continue
        try:  # the same containment as loading: no link out of the router's folder is exported
            path = confined(router_dir, spec.path, f"encoders.{enc}.path").resolve()
        except CheckpointError as err:
            raise ExportError(f"encoder {enc!r}: {err}") from err
        if spec.adapter_base is not None:
            if is_top_layers(path):
                if not (path / TOP_LAYERS_WEIGHTS).is_file():
                    raise ExportError(f"top-layer encoder {enc!r} at {path} has no {TOP_LAYERS_WEIGHTS}")
            elif not (path / ADAPTER_WEIGHTS).is_file() or not (path / ADAPTER_CONFIG).is_file():
                raise ExportError(f"adapter encoder {enc!r} at {path} has no {ADAPTER_CONFIG} / {ADAPTER_WEIGHTS}")
            base_repo = plan.encoder_repos.get(spec.adapter_base) or config.encoders[spec.adapter_base].repo_id
            if base_repo is None:
                raise ExportError(f"adapter encoder {enc!r}: its base {spec.adapter_base!r} is not exported")
        elif not (path / "model.safetensors").is_file():
            raise ExportError(f"encoder {enc!r} at {path} has no model.safetensors")
        repo = by_dir.setdefault(path, f"{org}/{name}-{_slug(enc)}")
        plan.encoder_repos[enc] = repo
        plan.encoder_dirs[repo] = path
        if spec.adapter_base is not None:
            plan.adapter_bases[repo] = base_repo
    for repo in [router_repo, *plan.encoder_dirs]:
        try:
            validate_repo_id(repo)
        except HFValidationError as err:
            raise ExportError(f"invalid Hub repo name {repo!r}: {err}") from err
    if not dry_run:
        from huggingface_hub import get_token

        if not (token or get_token()):
            raise ExportError("no Hugging Face token: run `huggingface-cli login`, set HF_TOKEN, or pass --dry-run OUT_DIR")
    return plan


#: Files of a router folder that only feed its cards: each may be missing, none may be damaged.
OPTIONAL_RESULTS = ("eval/retrieval.json", "analysis/analysis.json", "training_report.json", f"{ONNX_DIR}/{ONNX_EXPORT_INFO}",
                    "training_metrics.json")


def _optional_json(folder: Path, rel: str) -> dict[str, Any] | None:
    """The JSON object in ``folder / rel`` (read inside ``folder``), None when the file is missing.

    Raises:
        ExportError: the file is not UTF-8, not JSON (NaN included) or not an object: named, with
            what to do (the export writes nothing).
    """
    if not (folder / rel).is_file():
        return None
    path = confined(folder, rel, rel)  # a link out of the folder is refused as loading refuses it
    try:
        return read_json_object(path)
    except CheckpointError as err:
        raise ExportError(f"{err}; this file only feeds the model cards: fix it or remove it") from None


@contextlib.contextmanager
def _card_errors(what: str) -> Iterator[None]:
    """A one-line error when an optional results file has an unexpected layout while writing a card."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        if isinstance(err, ExportError):
            raise
        raise ExportError(f"cannot write the card of {what}: a results file has an unexpected layout ({type(err).__name__}: "
                          f"{str(err)[:200]}); fix or remove the damaged one of {', '.join(OPTIONAL_RESULTS)}") from None


def _pair_results(router_dir: Path, languages: list[str]) -> list[dict[str, Any]]:
    res = _optional_json(router_dir, "eval/retrieval.json")
    if res is None:
        return []
    out = []
    for row in res["pairs"]:
        a, b = row["pair"].split("-")
        if (a in languages and b in languages) or (a in languages and b == "en"):
            out.append({"pair": row["pair"], "value": row["systems"]["router"]["mean"]})
    return out


def write_folders(plan: HubPlan, out_dir: str | Path, revisions: dict[str, str] | None = None) -> dict[str, Path]:
    """Write one folder per repository (exactly what would be uploaded); returns repo -> folder.

    Everything is written into a temporary folder beside ``out_dir`` and moved into place when
    complete, so an interrupted export leaves no half-written repository.
    """
    staged = StagedDirectory(out_dir, "export", ExportError)
    try:
        folders = _write_folders(plan, staged.path, revisions)
        staged.commit()
    except BaseException:
        staged.abort()
        raise
    return {repo: staged.target / folder.relative_to(staged.path) for repo, folder in folders.items()}


def _write_folders(plan: HubPlan, out_dir: Path, revisions: dict[str, str] | None) -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for repo, src in plan.encoder_dirs.items():
        names = [e for e, r in plan.encoder_repos.items() if r == repo]
        write = (_encoder_folder if repo not in plan.adapter_bases else
                 _top_layers_folder if is_top_layers(src) else _adapter_folder)
        folders[repo] = write(plan, repo, src, names, out_dir)
    folders[plan.router_repo] = _router_folder(plan, out_dir, revisions or {})
    (out_dir / REPOS_FILE).write_text(json.dumps({r: str(p.relative_to(out_dir)) for r, p in folders.items()}, indent=1) + "\n")
    return folders


def _languages(plan: HubPlan, names: list[str]) -> list[str]:
    """The languages of the sprachbunds served by encoders ``names`` (all, for the shared/fallback encoder)."""
    cfg = plan.config
    return sorted({lang for g, e in cfg.sprachbund_encoders.items() if e in names for lang in cfg.sprachbunds[g]}) or cfg.languages


def _adapter_folder(plan: HubPlan, repo: str, src: Path, names: list[str], out_dir: Path) -> Path:
    """A LoRA adapter: a small repo on top of its base's repo."""
    from hub_cards.cards import adapter_card

    cfg, folder = plan.config, out_dir / repo.split("/")[1]
    base_repo = plan.adapter_bases[repo]
    info = write_st_adapter_folder(src, folder, out_dir / base_repo.split("/")[1], base_repo, cfg.pooling, cfg.encoders[names[0]])
    metrics = _optional_json(src, "training_metrics.json") or {}
    with _card_errors(repo):
        card = adapter_card(repo, names[0], cfg, plan.router_repo, base_repo, languages=_languages(plan, names),
                            training_metrics=metrics, adapter_info=info)
    card.save(folder / "README.md")
    return folder


def _top_layers_folder(plan: HubPlan, repo: str, src: Path, names: list[str], out_dir: Path) -> Path:
    """A top-layer encoder: the full merged encoder (what ``SentenceTransformer(repo)`` loads), plus
    its own top-layer files and ONNX graph, which the router loads onto its base repo."""
    import tempfile

    base_src = plan.encoder_dirs[plan.adapter_bases[repo]]
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        merged = write_merged(base_src, src, Path(tmp) / "merged")
        folder = _encoder_folder(plan, repo, merged, names, out_dir, onnx_src=src)
    for fname in (TOP_LAYERS_CONFIG, TOP_LAYERS_WEIGHTS):
        link_or_copy(src / fname, folder / fname)
    return folder


def _encoder_folder(plan: HubPlan, repo: str, src: Path, names: list[str], out_dir: Path,
                    onnx_src: Path | None = None) -> Path:
    """An encoder in sentence-transformers' layout, truncated to the router's layer (so that
    ``SentenceTransformer(folder)`` is the router's encoder), with its ONNX files and card."""
    from hub_cards.cards import encoder_card

    cfg, folder = plan.config, out_dir / repo.split("/")[1]
    st_info = write_st_folder(src, folder, cfg.pooling, cfg.encoders[names[0]])
    for fname in ENCODER_FILES:
        if (src / fname).is_file() and not (folder / fname).exists():
            link_or_copy(src / fname, folder / fname)
    onnx_info = None
    onnx_from = onnx_src or src  # a top-layer encoder's graph lives in its own folder
    if (onnx_from / ONNX_DIR / ONNX_EXPORT_INFO).is_file():
        link_tree(onnx_from / ONNX_DIR, folder / ONNX_DIR)
        for backend, legacy in LEGACY_ONNX_FILES.items():  # never publish a pooled graph as `onnx/model.onnx`
            old, new = folder / ONNX_DIR / legacy, folder / ONNX_DIR / ONNX_FILES[backend]
            if old.is_file() and not new.exists():
                old.rename(new)
        onnx_info = _optional_json(onnx_from, f"{ONNX_DIR}/{ONNX_EXPORT_INFO}")
    langs = _languages(plan, names)
    with _card_errors(repo):
        card = encoder_card(repo, names[0], cfg, plan.router_repo, languages=langs, onnx_info=onnx_info,
                            training_metrics=_optional_json(src, "training_metrics.json"),
                            pair_results=_pair_results(plan.router_dir, langs), pad_id=pad_token_id(src),
                            kept_layers=st_info["layers"])
    card.save(folder / "README.md")
    return folder


def _router_folder(plan: HubPlan, out_dir: Path, revisions: dict[str, str]) -> Path:
    """The router repo: the config pointing at the encoder repos, vectors, spaces, heads, analysis, card."""
    from hub_cards.cards import router_card

    cfg, folder = plan.config, out_dir / plan.router_repo.split("/")[1]
    data = cfg.to_dict()
    for enc, repo in plan.encoder_repos.items():
        spec = EncoderSpec(**data["encoders"][enc])
        spec.path, spec.repo_id, spec.revision = None, repo, revisions.get(repo)
        data["encoders"][enc] = asdict(spec)
    served = set(plan.encoder_repos) | {e for e, s in cfg.encoders.items() if s.repo_id}
    data["encoders"] = {k: v for k, v in data["encoders"].items() if k in served}  # baselines stay local
    data["spaces"] = {k: v for k, v in data.get("spaces", {}).items() if k in served}
    folder.mkdir(parents=True, exist_ok=True)
    RouterConfig.from_dict(data).save(folder)
    _copy_router_files(plan, folder, data["spaces"])
    analysis = None
    if (plan.router_dir / "analysis").is_dir():
        link_tree(confined(plan.router_dir, "analysis", "analysis"), folder / "analysis")
        analysis = _optional_json(plan.router_dir, "analysis/analysis.json")
    retrieval = _optional_json(plan.router_dir, "eval/retrieval.json")
    build_report = _optional_json(plan.router_dir, "training_report.json")
    if build_report is not None:
        report_file = confined(plan.router_dir, "training_report.json", "training_report.json")
        shutil.copyfile(report_file, folder / "training_report.json")  # a copy, never a link to the source
    with _card_errors(plan.router_repo):
        card = router_card(plan.router_repo, cfg, plan.encoder_repos, analysis, retrieval, build_report)
    card.save(folder / "README.md")
    return folder


def _copy_router_files(plan: HubPlan, folder: Path, spaces: dict[str, Any]) -> None:
    """Language vectors, the n-gram identifier, the spaces and the heads, each read with containment."""
    cfg = plan.config
    if (plan.router_dir / LANGUAGE_VECTORS_NAME).is_file():
        link_or_copy(confined(plan.router_dir, LANGUAGE_VECTORS_NAME, LANGUAGE_VECTORS_NAME), folder / LANGUAGE_VECTORS_NAME)
    if "ngram" in "+".join(cfg.language_id.backends).split("+"):  # the router's own language identifier
        dst = writable_inside(folder, NGRAM_FILE, "language_id")
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(confined(plan.router_dir, NGRAM_FILE, "language_id"), dst)
    copied: set[str] = set()
    for enc, space in spaces.items():  # the vector spaces live in the router repo, beside the config
        if space["path"] in copied:  # residual adapters are served through their base's own space file
            continue
        copied.add(space["path"])
        key = f"spaces.{enc}.path"
        dst = writable_inside(folder, space["path"], key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(confined(plan.router_dir, space["path"], key), dst)
    heads = {rel: f"heads.{task}.{g}" for task, per_group in cfg.heads.items() for g, rel in per_group.items()}
    for rel, key in sorted(heads.items()):
        link_tree(confined(plan.router_dir, rel, key), writable_inside(folder, rel, key))


def upload(plan: HubPlan, work_dir: str | Path, private: bool = False, token: str | None = None) -> dict[str, str]:
    """Upload encoder repos, then the router with their commits pinned; returns repo -> commit."""
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    commits: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        folders = write_folders(plan, Path(tmp) / "enc")
        for repo, folder in folders.items():
            if repo == plan.router_repo:
                continue
            api.create_repo(repo, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="Upload sprachbund encoder")
            commits[repo] = info.oid
            logger.info("uploaded %s at %s", repo, info.oid)
        pinned = write_folders(plan, Path(tmp) / "router", revisions=commits)[plan.router_repo]
        api.create_repo(plan.router_repo, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=plan.router_repo, folder_path=str(pinned), commit_message="Upload sprachbund router")
        commits[plan.router_repo] = info.oid
    return commits


def seed_cache(dry_run_dir: str | Path, cache_dir: str | Path, commit: str = "0" * 40) -> None:
    """Lay dry-run folders out as huggingface_hub's cache (``models--org--name/snapshots/...``)."""
    dry_run_dir, cache_dir = Path(dry_run_dir), Path(cache_dir)
    repos = json.loads((dry_run_dir / REPOS_FILE).read_text())
    for repo, rel in repos.items():
        root = cache_dir / ("models--" + repo.replace("/", "--"))
        link_tree(dry_run_dir / rel, root / "snapshots" / commit)
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(commit)
