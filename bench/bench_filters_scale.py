"""The web-text filters through the pipeline at 1M documents: `language`, the four quality rules
together and `decontaminate`, each a fresh `shardsift select` process with 2 workers measured whole
(every process's CPU, driver and worker peak RSS), with each one's reference measured in the same run.

    python bench/bench_filters_scale.py [--docs 1000000] [--workers 2]

Documents: the shared pool's texts of at least 2,000 characters cut to 2,000 (the ~2 KB documents the
goals are stated in), repeated with fresh ids to --docs, in 10 Parquet shards. The references, on a
seeded sample of those texts: fastText's `predict` per document with the same model (language);
datatrove 0.10.1's four filters with its default spaCy words (in a child process,
bench/bench_quality_rules.py) on 1,000 documents; a Python set of word 13-grams
(bench/bench_decontaminate.py) on 20,000. The decontamination benchmark is the Wikipedia target.
Writes bench/figures/filters_scale.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import DATA_DIR, FIGURES, command_line, corpora, machine, measured_select, save, versions  # noqa: E402

DOC_CHARS = 2000
RULES = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


def write_corpus(folder: str, n_docs: int, shards: int = 10) -> list[str]:
    """Pool texts of >= DOC_CHARS characters cut to DOC_CHARS, repeated to n_docs: the texts, in order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(corpora("pool"), "*.parquet")))
    text = pa.concat_arrays([pq.read_table(f, columns=["text"]).column("text").combine_chunks() for f in files])
    text = text.filter(pc.greater_equal(pc.utf8_length(text.fill_null("")), DOC_CHARS))
    text = pc.utf8_slice_codeunits(text, 0, DOC_CHARS)
    rows = np.arange(n_docs) % len(text)
    per = -(-n_docs // shards)
    os.makedirs(folder, exist_ok=True)
    for s in range(shards):
        lo, hi = s * per, min(n_docs, (s + 1) * per)
        ids = pc.binary_join_element_wise("d", pa.array(np.arange(lo, hi).astype(str)), "")
        pq.write_table(pa.table({"id": ids, "text": text.take(pa.array(rows[lo:hi]))}),
                       os.path.join(folder, f"part-{s:05d}.parquet"))
    return text.to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    from bench_decontaminate import reference_removed

    from shardsift.selectors.language.model import builtin_model_path

    tmp = tempfile.mkdtemp(prefix="shardsift-bench-filters-", dir=DATA_DIR)
    pool = os.path.join(tmp, "pool")
    texts = write_corpus(pool, args.docs)
    target = corpora("target", "wikipedia.parquet")
    stages = {"language": [{"language": {"languages": ["en"]}}],
              "quality_rules": [{name: {}} for name in RULES],
              "decontaminate": [{"decontaminate": {"benchmarks": [{"path": target, "name": "wikipedia"}]}}]}
    runs = {}
    for name, st in stages.items():
        out = os.path.join(tmp, name, "out")
        res, man = measured_select({"input": {"path": pool}, "output": {"path": out, "scores": False},
                                    "workers": args.workers, "seed": 0, "stages": st}, os.path.join(tmp, name))
        runs[name] = {"docs": man["docs_in"], "kept": man["docs_kept"], "docs_per_cpu_s": man["docs_in"] / res["cpu_s"],
                      **{k: res[k] for k in ("cpu_s", "wall_s", "driver_peak_rss_mb", "worker_peak_rss_mb")},
                      "stages": [{k: s.get(k) for k in ("name", "kept", "cpu_s")} for s in man["stages"]]}
        print(f"{name:<14} {runs[name]['docs_per_cpu_s']:>8,.0f} docs/CPU-s ({res['cpu_s']:.1f} CPU s, "
              f"{res['wall_s']:.1f} s wall), driver {res['driver_peak_rss_mb']:.0f} MB, worker "
              f"{res['worker_peak_rss_mb']:.0f} MB, kept {man['docs_kept']:,}", flush=True)
        shutil.rmtree(out, ignore_errors=True)

    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), min(20_000, len(texts)), replace=False)]
    import fasttext

    model = fasttext.load_model(builtin_model_path("bench"))
    c0 = time.process_time()
    for t in sample:
        model.predict(t.replace("\n", " "))
    lang_ref = {"docs": len(sample), "cpu_s": time.process_time() - c0}
    import pyarrow.parquet as pq

    eval_texts = pq.read_table(target, columns=["text"]).column("text").to_pylist()
    _, _, dec_cpu = reference_removed(eval_texts, sample)
    dec_ref = {"docs": len(sample), "cpu_s": dec_cpu}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "bench_quality_rules.py"), "--child-default", "1000"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"datatrove with its default tokenizer failed:\n{proc.stderr[-3000:]}")
    dt = json.loads(proc.stdout.strip().splitlines()[-1])
    rules_ref = {"docs": 1000, "cpu_s": sum(dt["cpu_s_by_filter"].values()),
                 "what": "datatrove 0.10.1's four filters, spaCy words (its default), on 1,000 pool documents"}
    refs = {"language": {**lang_ref, "what": "fastText predict per document, the same lid.176 model"},
            "quality_rules": rules_ref,
            "decontaminate": {**dec_ref, "what": "Python set of word 13-gram tuples, one loop per document"}}
    for name, ref in refs.items():
        ref["docs_per_cpu_s"] = ref["docs"] / ref["cpu_s"]
        runs[name]["ratio_to_reference"] = runs[name]["docs_per_cpu_s"] / ref["docs_per_cpu_s"]
        print(f"{name:<14} reference {ref['docs_per_cpu_s']:>8,.1f} docs/CPU-s -> {runs[name]['ratio_to_reference']:.1f}x",
              flush=True)
    result = {"what": "the web-text filters as shardsift select runs at scale, whole-run CPU and peak memory, "
                      "and each one's reference in the same run",
              "corpus": {"docs": args.docs, "doc_chars": DOC_CHARS, "distinct_texts": len(texts),
                         "source": "../shared/corpora/pool texts of >= 2,000 characters, cut, repeated"},
              "workers": args.workers, "runs": runs, "references": refs,
              "versions": versions("shardsift", "fasttext-numpy2-wheel", "datatrove", "spacy", "pyarrow"),
              "machine": machine(), "command": command_line()}
    print("wrote", save("filters_scale", result, FIGURES))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
