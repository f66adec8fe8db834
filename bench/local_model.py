"""Local model benchmark: how fast EMBEDDING_LOCAL_MODEL embeds a real day, and at what memory.

The product's `embedders.LocalEmbedder` (the model in-process with NumPy, one text a pass, its
vectors beside the offline words) embeds one real day of arXiv's machine-learning
listings (2026-06-16, 886 papers, from `arxiv_ml_days.jsonl.gz`) in its chunks, as
`newsletter embed` does. Reported: papers a second, the resident memory the model adds once
loaded and what embedding adds on top (Linux's peak RSS, reset before each part), and the
stored bytes per paper against the offline space's.

The baseline, in the same run, is the reference implementation: sentence-transformers on
PyTorch, when this Python has it (not a dependency of Paperwire; run the bench from an
environment that has both). It embeds the same texts from the same folder, and the bench
reports the lowest cosine between its vectors and the model part of ours.

    .venv/bin/python -m bench.local_model PATH/TO/all-MiniLM-L6-v2 [--corpus PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from bench.relevance import CORPUS, load_corpus, machine, text_of
from newsletter.relevance import embedders, local_model

DAY = "2026-06-16"


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def peak_mb() -> float:
    """The peak resident memory since the last `reset_peak` (Linux's VmHWM)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def reset_peak() -> None:
    # Writing 5 to clear_refs resets the peak (proc(5), /proc/pid/clear_refs).
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def reference(folder: Path, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """sentence-transformers' vectors of the texts, its seconds, and its peak over the
    memory before it loaded."""
    from sentence_transformers import SentenceTransformer

    before = resident_mb()
    reset_peak()
    started = time.perf_counter()
    encoder = SentenceTransformer(str(folder), device="cpu")
    rows = encoder.encode(texts, normalize_embeddings=True)
    return np.asarray(rows), time.perf_counter() - started, peak_mb() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a sentence-transformers model folder")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    days = dict(load_corpus(args.corpus))
    if DAY not in days:
        sys.exit(f"bench.local_model: {args.corpus} has no {DAY}")
    texts = [text_of(paper) for paper in days[DAY]]
    print(f"command: python -m bench.local_model {' '.join(sys.argv[1:])}")
    print(f"machine: {machine()}")

    before = resident_mb()
    reset_peak()
    started = time.perf_counter()
    try:
        embedder = embedders.LocalEmbedder(args.folder)
    except local_model.ModelFolderError as exc:
        sys.exit(f"bench.local_model: {exc}")
    loaded_in = time.perf_counter() - started
    loaded, loading_peak = resident_mb(), peak_mb()
    print(f"model: {embedder.space.name}, loaded in {loaded_in:.2f} s, "
          f"+{loaded - before:.0f} MB resident (+{loading_peak - before:.0f} MB at the peak "
          "of loading)\n")

    reset_peak()
    started = time.perf_counter()
    stored: list[bytes] = []
    for start in range(0, len(texts), embedder.batch_inputs):
        stored += embedder.embed(texts[start:start + embedder.batch_inputs]).vectors
        print(f"  {len(stored):,} of {len(texts):,} papers", end="\r", file=sys.stderr)
    ours = time.perf_counter() - started
    print(f"{DAY}: {len(texts)} papers")
    print("| way | time for the day | papers a second | memory over what was loaded before |")
    print("|---|---|---|---|")
    print(f"| Paperwire's LocalEmbedder (NumPy, with the words) | {ours:.1f} s | "
          f"{len(texts) / ours:.1f} | {peak_mb() - loaded:.0f} MB while embedding |")
    if importlib.util.find_spec("sentence_transformers") is None:
        print("| sentence-transformers | not installed in this Python | | |")
    else:
        theirs, seconds, memory = reference(args.folder, texts)
        dims = embedder.model.info.dims
        model_part = embedder.model.encode(texts[:50])
        print(f"| sentence-transformers (PyTorch; loading included) | {seconds:.1f} s | "
              f"{len(texts) / seconds:.1f} | {memory:.0f} MB, the model included |")
        cosine = float((model_part * theirs[:50, :dims]).sum(axis=1).min())
        print(f"\nspeed: ours at {seconds / ours:.2f}x the reference's; lowest cosine between "
              f"the two on the first 50 papers: {cosine:.7f}")
    offline = embedders.OfflineEmbedder().embed(texts).vectors
    print(f"stored bytes a paper: {sum(map(len, stored)) / len(stored):,.0f} "
          f"(offline space: {sum(map(len, offline)) / len(offline):,.0f})")


if __name__ == "__main__":
    main()
