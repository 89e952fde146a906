"""`shardsift losses`: the loss matrix of perplexity-correlation selection, from local causal LMs.

For every model directory (a ``transformers`` causal LM saved with ``save_pretrained``; nothing is
downloaded) and every document of the input, the bits per byte of the text:

    BPB_doc = sum of the token negative log-likelihoods in bits / UTF-8 bytes of the evaluated text

The text is truncated to the context length (``--max-length``, at most the model's own); the bytes
are those of the evaluated prefix. A start token (BOS, else EOS) is put in front so that the first
text token is predicted too. Per key (a document id, or a column such as ``domain``) the matrix
holds the token-weighted mean of its documents' BPB, ``sum_d t_d BPB_d / sum_d t_d`` with t_d the
number of predicted tokens, as in Thrush et al. 2024. Output: one row per key, the key column and
one column per model (Parquet or CSV), ready for ``perplexity_correlation: {losses: ...}``.

Needs the ``lm`` extra (``pip install 'shardsift[lm]'``: torch and transformers). Uses the GPU when
one is present (``--device auto``).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import pyarrow as pa

from .errors import ConfigError, DataError, ShardsiftError

LN2 = math.log(2.0)


def build_parser(prog: str = "shardsift losses") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Compute the bits-per-byte loss matrix of local causal "
                                "language models on a corpus (input of perplexity_correlation).")
    p.add_argument("--models", nargs="+", required=True, metavar="[NAME=]DIR",
                   help="local model directories (save_pretrained format); the column name is NAME or the "
                        "directory's base name")
    p.add_argument("--input", required=True, help="documents: Parquet/JSONL file, directory or glob")
    p.add_argument("--output", required=True, help="loss matrix to write: .parquet or .csv")
    p.add_argument("--text-column", default="text")
    p.add_argument("--id-column", default="id")
    p.add_argument("--key", default="id", help="key of a row: 'id' (one row per document) or a column, e.g. "
                   "domain (token-weighted mean BPB of its documents)")
    p.add_argument("--max-length", type=int, default=1024, help="context length in tokens (default 1024; "
                   "capped at the model's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-docs", type=int, default=None, help="use only the first N documents")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="model weights (auto: bfloat16 on a GPU that supports it, else float32)")
    p.add_argument("--per-doc", default=None, help="also write per-document nll_bits, bytes, tokens here")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None) -> int:
    """Entry point of ``shardsift losses``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        run(args)
    except ShardsiftError as err:
        print(f"shardsift: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


def _model_specs(items: list[str]) -> list[tuple[str, str]]:
    out, seen = [], set()
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            path = item
            name = os.path.basename(os.path.normpath(item))
        if not os.path.isdir(path):
            raise ConfigError(f"--models: {path}: not a directory (give local model directories; nothing is "
                              "downloaded)")
        if name in seen:
            raise ConfigError(f"--models: two models named {name!r}; name them NAME=DIR")
        seen.add(name)
        out.append((name, path))
    if not out:
        raise ConfigError("--models: give at least one model directory")
    return out


def read_documents(path: str, text_column: str, id_column: str, key: str, max_docs: int | None):
    """(texts: list[str], keys: np.ndarray of str) of the input corpus."""
    from .engine.contexts import read_corpus

    texts, keys, n = [], [], 0
    for docs in read_corpus({"path": path, "text_column": text_column, "id_column": id_column}, what="input"):
        if key != "id" and key not in docs.table.column_names:
            raise DataError(f"{path}: no column {key!r} (the --key)")
        k = docs.ids if key == "id" else docs.column(key)
        t = docs.text.to_pylist()
        kk = k.cast(pa.string()).to_pylist()
        if max_docs is not None and n + len(t) > max_docs:
            t, kk = t[:max_docs - n], kk[:max_docs - n]
        texts += t
        keys += ["" if v is None else v for v in kk]
        n += len(t)
        if max_docs is not None and n >= max_docs:
            break
    if not texts:
        raise DataError(f"{path}: no documents")
    return texts, np.array(keys, dtype=object)


def _device(spec: str):
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: no CUDA device available")
    return dev


def _dtype(spec: str, device):
    import torch

    if spec == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec]


def encode(tokenizer, texts: list[str], max_length: int):
    """Token ids (with a start token in front where the tokenizer has one), the number of predicted
    tokens, and the UTF-8 bytes of the text those tokens cover, per document."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    budget = max_length - (1 if start is not None else 0)
    if budget < 1:
        raise ConfigError(f"--max-length {max_length}: too short")
    fast = getattr(tokenizer, "is_fast", False)
    enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=budget,
                    return_offsets_mapping=fast, return_attention_mask=False)
    ids_all, n_bytes = [], np.zeros(len(texts), dtype=np.int64)
    for i, ids in enumerate(enc["input_ids"]):
        text = texts[i]
        if fast and ids:
            end = max(e for _, e in enc["offset_mapping"][i])
            covered = text if end >= len(text) else text[:end]
        elif ids:
            full = tokenizer(text, add_special_tokens=False)["input_ids"]
            covered = text if len(full) <= budget else tokenizer.decode(ids)
        else:
            covered = ""
        n_bytes[i] = len(covered.encode("utf-8"))
        ids_all.append(([start] if start is not None else []) + list(ids))
    n_pred = np.array([max(len(x) - 1, 0) for x in ids_all], dtype=np.int64)
    return ids_all, n_pred, n_bytes


def doc_nll_bits(model, ids_all: list[list[int]], batch_size: int, device, pad_id: int) -> np.ndarray:
    """Summed negative log-likelihood (bits) of tokens 1..L-1 of each sequence, batched by length."""
    import torch

    nll = np.zeros(len(ids_all), dtype=np.float64)
    lengths = np.array([len(x) for x in ids_all])
    order = np.argsort(-lengths, kind="stable")  # similar lengths together: little padding
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = [int(i) for i in order[b:b + batch_size] if lengths[i] > 1]
            if not idx:
                continue
            width = int(max(lengths[i] for i in idx))
            inp = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                inp[r, :lengths[i]] = torch.tensor(ids_all[i], dtype=torch.long)
                mask[r, :lengths[i]] = 1
            inp, mask = inp.to(device), mask.to(device)
            logits = model(input_ids=inp, attention_mask=mask).logits[:, :-1, :].float()
            target = inp[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                     reduction="none", ignore_index=-100)
            per_doc = loss.view(len(idx), -1).sum(dim=1).double().cpu().numpy() / LN2
            nll[idx] = per_doc
    return nll


def aggregate(keys: np.ndarray, bpb: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token-weighted mean BPB per key: (sorted unique keys, values)."""
    uniq, inv = np.unique(keys.astype(str), return_inverse=True)
    w = np.bincount(inv, weights=weights, minlength=len(uniq))
    s = np.bincount(inv, weights=weights * bpb, minlength=len(uniq))
    with np.errstate(invalid="ignore", divide="ignore"):
        return uniq, np.where(w > 0, s / np.where(w > 0, w, 1), np.nan)


def run(args) -> dict:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as err:
        raise ConfigError(f"shardsift losses needs torch and transformers: pip install 'shardsift[lm]' ({err})") \
            from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.batch_size < 1:
        raise ConfigError("--batch-size: must be >= 1")
    if not args.output.lower().endswith((".parquet", ".csv")):
        raise ConfigError(f"--output {args.output}: must end in .parquet or .csv")
    specs = _model_specs(args.models)
    texts, keys = read_documents(args.input, args.text_column, args.id_column, args.key, args.max_docs)
    device = _device(args.device)
    dtype = _dtype(args.dtype, device)
    columns: dict[str, np.ndarray] = {}
    per_doc: dict[str, np.ndarray] = {}
    uniq = None
    for name, path in specs:
        t0 = time.perf_counter()
        try:
            tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as err:
            raise DataError(f"--models: {path}: cannot load a causal LM and its tokenizer "
                            f"({str(err).splitlines()[0]})") from None
        model.to(device).eval()
        ctx = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        max_len = min(args.max_length, int(ctx)) if ctx else args.max_length
        ids, n_pred, n_bytes = encode(tok, texts, max_len)
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        nll = doc_nll_bits(model, ids, args.batch_size, device, pad)
        with np.errstate(invalid="ignore", divide="ignore"):
            bpb = np.where(n_bytes > 0, nll / np.maximum(n_bytes, 1), np.nan)
        usable = (n_bytes > 0) & (n_pred > 0)
        u, vals = aggregate(keys[usable], bpb[usable], n_pred[usable].astype(np.float64))
        if uniq is None:
            uniq = u
        elif not np.array_equal(u, uniq):  # a key whose documents are all empty for one tokenizer only
            vals = np.array([dict(zip(u, vals)).get(k, np.nan) for k in uniq])
        columns[name] = vals
        if args.per_doc:
            per_doc[f"{name}/nll_bits"], per_doc[f"{name}/tokens"] = nll, n_pred
            per_doc[f"{name}/bytes"] = n_bytes
        if not args.quiet:
            print(f"losses: {name}: {len(texts)} documents, {int(n_pred.sum())} tokens, mean BPB "
                  f"{np.nanmean(bpb):.4f} on {device.type} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        del model
    empty = ~np.isfinite(np.vstack(list(columns.values()))).all(axis=0)
    if empty.all():
        raise DataError(f"{args.input}: every document is empty; nothing to measure")
    key_name = args.key
    tbl = pa.table({key_name: pa.array(uniq[~empty].tolist(), pa.string()),
                    **{m: pa.array(v[~empty]) for m, v in columns.items()}})
    _write(tbl, args.output)
    if args.per_doc:
        doc_tbl = pa.table({key_name: pa.array(keys.astype(str).tolist(), pa.string()),
                            **{k: pa.array(v) for k, v in per_doc.items()}})
        _write(doc_tbl, args.per_doc)
    if not args.quiet:
        dropped = f" ({int(empty.sum())} keys of only empty documents left out)" if empty.any() else ""
        print(f"losses: wrote {tbl.num_rows} keys x {len(columns)} models to {args.output}{dropped}",
              file=sys.stderr)
    return {"keys": tbl.num_rows, "models": list(columns), "output": args.output}


def _write(tbl: pa.Table, path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    if path.lower().endswith(".csv"):
        from pyarrow import csv

        csv.write_csv(tbl, tmp)
    else:
        import pyarrow.parquet as pq

        pq.write_table(tbl, tmp, compression="zstd")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
