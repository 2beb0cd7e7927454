"""A tiny random-weight router for fast unit tests of the plumbing (never for quality)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from sprachbund_router.config import EncoderSpec, PoolingConfig, RouterConfig, save_language_vectors

WORDS = (
    "the cat sits on mat dog runs house green red big small a is der die das katze hund haus "
    "le chat chien maison rouge кошка собака дом красный 猫 狗 房子"
).split()


def toy_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a small vocabulary (unknown words -> [UNK])."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=64,
    )


def write_toy_encoder(path: Path, seed: int) -> Path:
    """Save a 2-layer random BERT (hidden 32) with the toy tokenizer."""
    torch.manual_seed(seed)
    tok = toy_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def write_toy_router(root: Path) -> Path:
    """A router with two sprachbunds, each with its own toy encoder, plus a shared one."""
    for name, seed in (("west", 1), ("east", 2), ("shared", 3)):
        write_toy_encoder(root / "encoders" / name, seed)
    config = RouterConfig(
        sprachbunds={"west": ["de", "en", "fr"], "east": ["ru", "zh"]},
        encoders={n: EncoderSpec(path=f"encoders/{n}", max_length=16) for n in ("west", "east", "shared")},
        sprachbund_encoders={"west": "west", "east": "east"},
        shared_encoder="shared",
        fallback_encoder="shared",
        pooling=PoolingConfig(layer=-1, mode="mean"),
        pivots={"west": "de", "east": "ru"},
    )
    config.save(root)
    save_language_vectors(root, ["de", "en", "fr", "ru", "zh"], torch.randn(5, 32).numpy())
    return root


def write_toy_space_router(root: Path, seed: int = 0) -> Path:
    """A toy router whose sprachbunds share one encoder with a vector space: a random mean per
    language (not zh: it uses its sprachbund's), a random orthogonal map per sprachbund."""
    import numpy as np

    from sprachbund_router.space import SpaceSpec, VectorSpace

    write_toy_encoder(root / "encoders" / "shared", 3)
    groups = {"west": ["de", "en", "fr"], "east": ["ru", "zh"]}
    rng = np.random.default_rng(seed)
    means = {f"lang:{lang}": rng.normal(size=32).astype(np.float32) * 0.1 for lang in ("de", "en", "fr", "ru")}
    means["sprachbund:west"] = np.mean([means[f"lang:{x}"] for x in ("de", "en", "fr")], axis=0)
    means["sprachbund:east"] = means["lang:ru"]
    means["global"] = np.mean([means[f"lang:{x}"] for x in ("de", "en", "fr", "ru")], axis=0)
    maps = {g: np.linalg.qr(rng.normal(size=(32, 32)))[0].astype(np.float32) for g in groups}
    spec = SpaceSpec(path="spaces/shared.safetensors", sprachbund_maps={"west": "west", "east": "east"})
    VectorSpace(spec, means, maps, {m: g for g, ms in groups.items() for m in ms}).save(root)
    config = RouterConfig(
        sprachbunds=groups,
        encoders={"shared": EncoderSpec(path="encoders/shared", max_length=16)},
        sprachbund_encoders={"west": "shared", "east": "shared"},
        shared_encoder="shared",
        fallback_encoder="shared",
        pooling=PoolingConfig(layer=-1, mode="mean"),
        pivots={"west": "de", "east": "ru"},
        spaces={"shared": spec},
    )
    config.save(root)
    save_language_vectors(root, ["de", "en", "fr", "ru", "zh"], torch.randn(5, 32).numpy())
    return root
