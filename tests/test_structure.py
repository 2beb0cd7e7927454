"""Structure: the runtime's imports form no circle, and every served vector comes from one
function (:meth:`sprachbund_router.space.VectorSpace.serve`)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from sprachbund_router.router import Route

PACKAGE = Path(__file__).resolve().parents[1] / "sprachbund_router"
ROOT = PACKAGE.parent
#: Every top-level package of the repository.
PACKAGES = ("sprachbund_router", "training", "exporters", "hub_cards", "benchmarks")
#: The CLI's commands that run a build, an evaluation or an export: the one seam through which the
#: runtime package reaches ``training`` and ``exporters``, and only inside functions (lazily).
CLI_SEAM = {"sprachbund_router.cli.train", "sprachbund_router.cli.evaluate", "sprachbund_router.cli.export"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def runtime_import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports anywhere in its body (function-level imports included)."""
    return import_graph(("sprachbund_router",))


def import_graph(packages: tuple[str, ...] = PACKAGES, top_level_only: bool = False) -> dict[str, set[str]]:
    """Module -> repository modules it imports (anywhere in its body, or ``top_level_only``)."""
    modules = {_module_name(p): p for pk in packages for p in (ROOT / pk).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in (tree.body if top_level_only else ast.walk(tree)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of modules, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_on_a_toy():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_repository_has_no_import_circle_and_data_flows_one_way():
    """Issue 34: no circle anywhere; the runtime imports neither training nor exporters (the CLI's
    commands reach them lazily, through one seam); training never imports benchmarks."""
    graph = import_graph()
    assert "training.loso" in graph and "benchmarks.loso" in graph
    assert find_cycle(graph) is None, find_cycle(graph)
    top = import_graph(top_level_only=True)
    for module, deps in graph.items():
        outside = {d for d in deps if d.split(".")[0] in ("training", "exporters", "benchmarks", "hub_cards")}
        if module.startswith("sprachbund_router."):
            assert not outside or module in CLI_SEAM, (module, outside)
            assert not {d for d in top[module] if d.split(".")[0] != "sprachbund_router"}, module  # lazily only
        if module.startswith("training"):
            assert not {d for d in deps if d.startswith("benchmarks")}, module


def test_runtime_imports_have_no_circle():
    graph = runtime_import_graph()
    assert "sprachbund_router.tensors" in graph["sprachbund_router.space"]  # the safetensors helpers live in a leaf
    assert not graph["sprachbund_router.tensors"] - {"sprachbund_router.errors"}
    # the package's __init__ re-exports the public API; a module importing the package itself
    # would close a loop through it, which the walk reports too
    assert find_cycle(graph) is None, find_cycle(graph)


def test_evaluation_and_training_serve_what_the_router_serves(default_router):
    """Heads (training.stages), space variants (training.held_out_eval) and the router's encode
    give identical vectors on a mixed batch, fallback rows included."""
    from training.held_out_eval import served_by
    from training.stages import FALLBACK, served_embed

    router = default_router
    texts = ["Die Katze schläft auf dem Sofa.", "Кошка спит на диване.", "猫在沙发上睡觉。", "The cat sleeps on the sofa.",
             "बिल्ली सोफे पर सो रही है।", "Le chat dort sur le canapé."]
    langs = ["de", "ru", "zh", "en", "hi", "fr"]
    served = router.encode(texts, lang=langs)
    embed = served_embed(router)
    space = router.spaces[router.config.shared_encoder]
    variant = served_by(space)
    raw = router.encoder(router.config.shared_encoder).encode(texts)
    for i, (text, lang) in enumerate(zip(texts, langs)):
        group = router.config.sprachbund_of(lang)
        np.testing.assert_allclose(embed(group, lang, [text])[0], served[i], atol=1e-5)
        own = router.encoder(router.config.encoder_of(lang)).encode([text])  # its language's encoder (top layers)
        np.testing.assert_allclose(variant(lang, own)[0], served[i], atol=1e-5)
    # the fallback path: rows routed to the fallback encoder get the global mean and no map
    routes = [Route(lang, None, router.config.fallback_encoder, 0.1, True, "test") for lang in langs]
    fell_back = router.encode_routes(texts, routes)
    for i, (text, lang) in enumerate(zip(texts, langs)):
        np.testing.assert_allclose(embed(FALLBACK, lang, [text])[0], fell_back[i], atol=1e-5)
        np.testing.assert_allclose(variant(lang, raw[i:i + 1], True)[0], fell_back[i], atol=1e-5)
    # a mixed batch served at once equals the rows served one by one
    mixed = space.serve(raw, langs, [i % 2 == 1 for i in range(len(texts))])
    for i in range(len(texts)):
        np.testing.assert_allclose(mixed[i], space.serve(raw[i:i + 1], langs[i:i + 1], [i % 2 == 1])[0], atol=1e-6)


def test_the_build_reads_as_a_list_of_stages():
    """No function of training/pipeline.py is longer than about 60 lines; build_router calls the stages."""
    path = PACKAGE.parent / "training" / "pipeline.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}  # type: ignore[operator]
    assert max(lengths.values()) <= 60, {k: v for k, v in lengths.items() if v > 60}
    build = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_router")
    called = [c.func.id for c in ast.walk(build) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
    assert [c for c in called if c.endswith("_stage")][:3] == ["pooling_stage", "language_vector_stage", "sprachbund_stage"]


def test_backend_names_live_in_one_module():
    """The encoder backends' names, ONNX file names and probe tolerances are written once, in the
    leaf ``sprachbund_router.backend``; the CLI's choices are built from it."""
    from sprachbund_router.backend import AUTO, CONCRETE_BACKENDS, ENCODER_BACKENDS, ONNX_FILES, PROBE_MIN_COSINE, check_backend
    from sprachbund_router.cli.options import Backend

    assert [b.value for b in Backend] == list(ENCODER_BACKENDS)
    assert set(ONNX_FILES) | {"torch"} == set(PROBE_MIN_COSINE) == set(CONCRETE_BACKENDS) == set(ENCODER_BACKENDS) - {AUTO}
    root = PACKAGE.parent
    for path in [*PACKAGE.rglob("*.py"), *(root / "exporters").rglob("*.py"), *(root / "hub_cards").rglob("*.py")]:
        if path.name == "backend.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert '"model_pooled' not in text and '"onnx-int8": 0.' not in text, path
    assert not runtime_import_graph()["sprachbund_router.backend"]  # a leaf
    try:
        check_backend("cuda")
    except ValueError as err:
        assert "torch" in str(err)
    else:
        raise AssertionError("an unknown backend was accepted")


def test_identifiers_meet_the_identifier_protocol():
    from sprachbund_router.language_id import Identifier, make_identifier

    ident = make_identifier("langid", ["de", "fr", "en"])
    assert isinstance(ident, Identifier)
    probs = ident.distribution(["Die Katze schläft auf dem Sofa."])
    assert probs.shape == (1, len(ident.languages)) and ident.languages[int(probs.argmax())] == "de"


def test_the_space_settings_speak_one_vocabulary():
    """Issue 34: a served-vector setting has one name everywhere: the protocol's candidates
    (``training.loso.Choice``) are the build's space settings (``SpaceSettings``, the TOML's
    ``[space]``) plus the encoder's layer and prefix and the retrieval scoring, and the runtime
    spec (``SpaceSpec``) names what it shares with them the same way; old results files still load."""
    from dataclasses import fields

    from sprachbund_router.space import SpaceSpec
    from training.loso import Choice
    from training.space import SpaceSettings

    choice = {f.name for f in fields(Choice)} - {"layer", "prefix", "scoring"}
    settings = {f.name for f in fields(SpaceSettings)}
    assert choice <= settings, choice - settings
    assert {"centring", "missing_mean", "fallback_mean", "anchor", "subspace_rows"} <= settings & {f.name for f in fields(SpaceSpec)}
    chosen = SpaceSettings(protocol="sources", mean_sentences=700, subspace_rank=8, subspace_rows="without own mean",
                           maps="sprachbund", shrink_group=0.0).choice()
    legacy = {"layer": 12, "prefix": "", "centring": True, "mean_texts": 700, "missing": "sprachbund", "lsar_rank": 8,
              "lsar_rows": "without own mean", "maps": "sprachbund", "shrink_group": 0.0, "shrink_language": 1.0,
              "scoring": "cosine"}
    assert Choice.from_record(legacy) == chosen
