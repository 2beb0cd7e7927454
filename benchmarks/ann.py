"""Approximate search for persistent indexes: FAISS IVF and usearch HNSW against exact search.

Synthetic 384-d unit vectors with structure like sentence vectors (a mixture of 2,000 clusters)
stand in for a corpus; each query is a corpus vector plus noise (a paraphrase or translation of
it), so the exact nearest neighbour is known. For each corpus size the table gives build time,
index memory, query latency (1,000 queries, batch and one at a time) and recall@1 against exact
search. Writes ``benchmarks/results/ann.json``.

    .venv/bin/python -m benchmarks.ann [--sizes 100000 1000000] [--queries 1000]
    .venv/bin/python -m benchmarks.ann --sizes --streamed-sizes 10000000   # 10M, IVF-SQ8, chunked
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import describe
from sprachbund_router.index import top_k_cosine

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic(n: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corpus [n, dim], queries [n_queries, dim] and the corpus row each query was made from."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    corpus = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 200_000):
        m = min(200_000, n - s)
        block = centres[rng.integers(0, len(centres), m)] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
        corpus[s : s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    src = rng.choice(n, n_queries, replace=False)
    q = corpus[src] + 0.04 * rng.normal(size=(n_queries, dim)).astype(np.float32)
    return corpus, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), src


def synthetic_chunk(i: int, size: int, dim: int, centres: np.ndarray, seed: int = 0) -> np.ndarray:
    """Chunk ``i`` of a corpus too big to hold twice: the same 2,000-cluster mixture, each chunk
    from its own seeded generator, so a second pass regenerates it exactly."""
    rng = np.random.default_rng([seed, i])
    block = centres[rng.integers(0, len(centres), size)] + 0.6 * rng.normal(size=(size, dim)).astype(np.float32)
    return (block / np.linalg.norm(block, axis=1, keepdims=True)).astype(np.float32)


def streamed(n: int, dim: int, n_queries: int, nlist: int, chunk: int = 500_000, seed: int = 0) -> list[dict]:
    """FAISS IVF with 8-bit scalar quantisation (a quarter of float32's memory) at a size whose
    float32 vectors would not fit twice in memory: the corpus is generated chunk by chunk into the
    index, and exact top-1 for recall comes from a second, regenerated pass (blocked numpy)."""
    import faiss

    centres = np.random.default_rng(seed).normal(size=(2000, dim)).astype(np.float32)
    n_chunks = -(-n // chunk)
    rng = np.random.default_rng(seed + 1)
    src = np.sort(rng.choice(n, n_queries, replace=False))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    first = synthetic_chunk(0, min(chunk, n), dim, centres, seed)
    ivf.train(first[: max(100_000, 40 * nlist)])
    picked = []
    for i in range(n_chunks):
        block = first if i == 0 else synthetic_chunk(i, min(chunk, n - i * chunk), dim, centres, seed)
        ivf.add(block)
        rows = src[(src >= i * chunk) & (src < i * chunk + len(block))] - i * chunk
        picked.append(block[rows])
        print(f"  added {min(n, (i + 1) * chunk):,} / {n:,}", flush=True)
    build = time.perf_counter() - t
    q = np.concatenate(picked) + 0.04 * rng.normal(size=(n_queries, dim)).astype(np.float32)
    queries = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    best, truth = np.full(n_queries, -np.inf, dtype=np.float32), np.zeros(n_queries, dtype=np.int64)
    t = time.perf_counter()
    for i in range(n_chunks):  # exact top-1, chunk by chunk
        block = synthetic_chunk(i, min(chunk, n - i * chunk), dim, centres, seed)
        sims = queries @ block.T
        j = sims.argmax(axis=1)
        better = sims[np.arange(n_queries), j] > best
        best[better], truth[better] = sims[np.arange(n_queries), j][better], j[better] + i * chunk
    t_exact = time.perf_counter() - t  # includes regenerating the vectors: an upper bound for exact search
    rows = [{"n": n, "method": "exact (blocked numpy, regenerated chunks; upper bound)", "build_s": 0.0,
             "index_mib": round(n * dim * 4 / 2**20), "batch_ms_per_query": round(1000 * t_exact / n_queries, 3),
             "recall_at_1": 1.0}]
    for nprobe in sorted({max(1, nlist // 64), max(1, nlist // 16), max(1, nlist // 4)}):
        ivf.nprobe = nprobe
        (_, idx), tb = timed(ivf.search, queries, 1)
        single = [timed(ivf.search, queries[i : i + 1], 1)[1] for i in range(min(100, n_queries))]
        rows.append({"n": n, "method": f"faiss IVF-SQ8 nlist={nlist} nprobe={nprobe}", "build_s": round(build, 1),
                     "index_mib": round(n * (dim + 8) / 2**20), "batch_ms_per_query": round(1000 * tb / n_queries, 3),
                     "single_ms": round(1000 * float(np.median(single)), 3),
                     "recall_at_1": round(float((idx[:, 0] == truth).mean()), 4)})
    return rows


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--usearch-max", type=int, default=200_000,
                    help="Skip usearch above this size (its HNSW build runs ~1,400 vectors/s on 2 cores).")
    ap.add_argument("--streamed-sizes", type=int, nargs="*", default=[],
                    help="Sizes built chunk by chunk into an IVF-SQ8 index (e.g. 10000000: float32 would not fit twice).")
    ap.add_argument("--streamed-nlist", type=int, default=4096)
    ap.add_argument("--output", type=Path, default=RESULTS / "ann.json")
    args = ap.parse_args()
    import faiss
    import usearch
    from usearch.index import Index

    rows = []
    for n in args.sizes:
        corpus, queries, _ = synthetic(n, args.dim, args.queries)
        (exact_idx, _), t_exact = timed(top_k_cosine, queries, corpus, 1, 256)
        truth = exact_idx[:, 0]
        rows.append({"n": n, "method": "exact (blocked numpy)", "build_s": 0.0, "index_mib": round(corpus.nbytes / 2**20),
                     "batch_ms_per_query": round(1000 * t_exact / len(queries), 3), "recall_at_1": 1.0})
        nlist = int(max(1, min(65_536, 4 * np.sqrt(n), n // 39)))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(args.dim), args.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        t = time.perf_counter()
        sample = np.random.default_rng(0).choice(n, min(n, max(100_000, 40 * nlist)), replace=False)
        ivf.train(corpus[np.sort(sample)])
        ivf.add(corpus)
        build = time.perf_counter() - t
        for nprobe in sorted({max(1, nlist // 64), max(1, nlist // 16), max(1, nlist // 4)}):
            ivf.nprobe = nprobe
            (_, idx), tb = timed(ivf.search, queries, 1)
            single = [timed(ivf.search, queries[i : i + 1], 1)[1] for i in range(min(200, len(queries)))]
            rows.append({"n": n, "method": f"faiss IVFFlat nlist={nlist} nprobe={nprobe}", "build_s": round(build, 1),
                         "index_mib": round(corpus.nbytes / 2**20), "batch_ms_per_query": round(1000 * tb / len(queries), 3),
                         "single_ms": round(1000 * float(np.median(single)), 3),
                         "recall_at_1": round(float((idx[:, 0] == truth).mean()), 4)})
        for dtype in ("f16", "i8") if n <= args.usearch_max else ():
            hnsw = Index(ndim=args.dim, metric="ip", dtype=dtype, connectivity=16, expansion_add=128, expansion_search=64)
            t = time.perf_counter()
            hnsw.add(np.arange(n), corpus, threads=os.cpu_count() or 1)
            build = time.perf_counter() - t
            res, tb = timed(lambda q, h=hnsw: h.search(q, 1, threads=os.cpu_count() or 1), queries)
            single = [timed(lambda q, h=hnsw: h.search(q, 1), queries[i])[1] for i in range(min(200, len(queries)))]
            got = np.asarray(res.keys).reshape(len(queries), -1)[:, 0]
            rows.append({"n": n, "method": f"usearch HNSW {dtype} M=16", "build_s": round(build, 1),
                         "index_mib": round(hnsw.memory_usage / 2**20), "batch_ms_per_query": round(1000 * tb / len(queries), 3),
                         "single_ms": round(1000 * float(np.median(single)), 3),
                         "recall_at_1": round(float((got == truth).mean()), 4)})
        print(f"done n={n}", flush=True)
    for n in args.streamed_sizes:
        rows += streamed(n, args.dim, min(args.queries, 200), args.streamed_nlist)
        print(f"done n={n} (streamed)", flush=True)
    if args.output.is_file():  # keep rows of sizes not measured in this run
        old_rows = json.loads(args.output.read_text()).get("rows", [])
        measured = {(r["n"], r["method"].split(" nlist")[0]) for r in rows}
        rows = [r for r in old_rows if (r["n"], r["method"].split(" nlist")[0]) not in measured] + rows
    machine = describe()
    record = {"machine": machine, "dim": args.dim, "queries": args.queries, "faiss": faiss.__version__,
              "usearch": usearch.__version__, "command": "python -m benchmarks.ann", "rows": rows,
              "data": "synthetic: 2,000-cluster mixture of unit vectors; queries = corpus vectors + noise"}
    print("| n | method | build s | index MiB | batch ms/query | single ms | recall@1 |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['method']} | {r['build_s']} | {r['index_mib']} | {r['batch_ms_per_query']} | "
              f"{r.get('single_ms', '-')} | {r['recall_at_1']} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
