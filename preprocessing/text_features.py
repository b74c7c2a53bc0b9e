"""Item metadata (``meta_<Category>.json.gz``) -> Sentence-BERT ``text_feat.npy`` aligned to the item ids.

    python -m preprocessing.text_features --meta raw/meta_Baby.json.gz --data data/baby

The 2014 release stores one Python dict literal per line (parsed with ``ast.literal_eval``, never
``eval``); the 2018 release is strict JSON; both are accepted. Each item's text joins the configured
fields (default ``title,brand,categories,description``: the brand really is the brand, unlike the
official script that appended the title a second time), encoded with a Sentence-BERT model (default
all-MiniLM-L6-v2 from the offline package). Items without metadata (or with empty text) get the mean
of the other items' embeddings; they are counted and listed in ``manifest_text.json``.
"""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.data.text import DEFAULT_MODEL, encode_texts
from idsf_pyg.errors import DataFormatError

from .common import (BadRecords, check_outputs, check_positive, describe_input, iter_lines, read_item_map, save_npy,
                     write_manifest)

FIELDS = ("title", "brand", "categories", "description")


def parse_meta_line(raw: str, path: Path, line_no: int) -> Dict[str, Any]:
    """One metadata record: strict JSON (2018) or a Python literal (2014)."""
    try:
        obj = json.loads(raw)
    except RecursionError:
        raise DataFormatError(path, "nested too deeply to parse", line_no) from None
    except json.JSONDecodeError:
        try:
            obj = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            detail = f"{type(e).__name__}: {getattr(e, 'msg', None) or e}"
            raise DataFormatError(path, f"neither JSON nor a Python literal ({detail[:120]})", line_no) from None
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected a dict per line, got {type(obj).__name__}", line_no)
    if not isinstance(obj.get("asin"), str):
        raise DataFormatError(path, "missing asin", line_no, field="asin")
    return obj


def _flatten_categories(value: Any) -> List[str]:
    out: List[str] = []
    stack = [value]
    while stack:  # categories are lists of lists in 2014, a flat list in 2018
        v = stack.pop(0)
        if isinstance(v, (list, tuple)):
            stack[0:0] = list(v)
        elif isinstance(v, str) and v.strip() and v.strip() not in out:
            out.append(v.strip())
    return out


def item_text(meta: Dict[str, Any], fields: Sequence[str]) -> str:
    parts: List[str] = []
    for field in fields:
        value = meta.get(field)
        if field == "categories" or field == "category":
            cats = _flatten_categories(value)
            if cats:
                parts.append(", ".join(cats))
        elif isinstance(value, (list, tuple)):
            text = " ".join(str(v).strip() for v in value if str(v).strip())
            if text:
                parts.append(text)
        elif value is not None and str(value).strip():
            parts.append(str(value).strip())
    return ". ".join(parts)


def collect_texts(meta_path: Path, asins: List[str], fields: Sequence[str], bad: BadRecords) -> List[Optional[str]]:
    index = {a: k for k, a in enumerate(asins)}
    texts: List[Optional[str]] = [None] * len(asins)
    for line_no, raw in iter_lines(meta_path):
        try:
            meta = parse_meta_line(raw, meta_path, line_no)
        except DataFormatError as e:
            bad(e)
            continue
        k = index.get(meta["asin"])
        if k is not None and texts[k] is None:
            try:
                texts[k] = item_text(meta, fields)
            except RecursionError:  # str() of a list nested thousands deep
                bad(DataFormatError(meta_path, "a field is nested too deeply to turn into text", line_no))
    return texts


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m preprocessing.text_features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meta", type=Path, required=True, help="meta_<Category>.json.gz (2014 or 2018 release)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder holding item_list.txt")
    p.add_argument("--fields", default=",".join(FIELDS), help="metadata fields joined into the text "
                                                              "(default: %(default)s)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="Sentence-BERT model: a local path, or the default %(default)s from the offline package")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default=None, help="cpu or cuda (default: what sentence-transformers picks)")
    p.add_argument("--output", default="text_feat.npy", help="file name in --data (default: %(default)s)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count malformed lines instead of failing")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    check_positive("--batch-size", args.batch_size)
    out = args.data / args.output
    manifest_path = args.data / "manifest_text.json"
    check_outputs([out, manifest_path], args.overwrite)
    asins = read_item_map(args.data)
    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    bad = BadRecords(args.skip_bad)
    texts = collect_texts(args.meta, asins, fields, bad)
    missing = [k for k, t in enumerate(texts) if not t]
    present = [k for k, t in enumerate(texts) if t]
    if not present:
        raise DataFormatError(args.meta, "no item of item_list.txt has metadata text")
    emb = encode_texts([texts[k] for k in present], model=args.model, batch_size=args.batch_size,
                       cache=False, device=args.device)
    feats = np.empty((len(asins), emb.shape[1]), dtype=np.float32)
    feats[present] = emb
    if missing:
        feats[missing] = emb.mean(0)
    save_npy(out, feats)
    manifest = write_manifest(manifest_path, "text_features", [describe_input(args.meta)], [out], {
        "model": args.model, "fields": fields, "dim": int(feats.shape[1]), "items": len(asins),
        "items_without_text": len(missing), "missing_fill": "mean of the other items' embeddings",
        "missing_asins": [asins[k] for k in missing[:100]], **bad.report()})
    print(f"wrote {out}: {feats.shape}, {len(missing)} items without text (mean-filled)")
    return manifest


if __name__ == "__main__":
    entry_point(main)
