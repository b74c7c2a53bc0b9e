"""Download the raw Amazon 2014 files of one category (the only code that touches the network).

    python -m preprocessing.download --category Baby --out raw/

Fetches ``reviews_<Category>_5.json.gz``, ``meta_<Category>.json.gz`` and ``image_features_<Category>.b``
from the dataset's public site (``--base-url``), resuming partial downloads (``<file>.part``) with HTTP
range requests, with a progress bar, and reports each file's size and sha256 in
``download_manifest.json``. Category names are those of the site: Baby, Sports_and_Outdoors,
Clothing_Shoes_and_Jewelry, ...
"""
from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

from tqdm.auto import tqdm

from .common import describe_input, write_manifest

BASE_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
KINDS = ("reviews", "meta", "images")


def file_names(category: str, kinds=KINDS) -> List[str]:
    names = {"reviews": f"reviews_{category}_5.json.gz", "meta": f"meta_{category}.json.gz",
             "images": f"image_features_{category}.b"}
    return [names[k] for k in kinds]


def fetch(url: str, dest: Path, chunk: int = 1 << 20, timeout: float = 60.0, progress: bool = True) -> Path:
    """Downloads ``url`` to ``dest``, resuming ``dest.part`` if present; returns ``dest``."""
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part file is already complete
            os.replace(part, dest)
            return dest
        raise SystemExit(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise SystemExit(f"download of {url} failed: {e.reason}") from None
    with resp:
        resumed = have and resp.status == 206
        if have and not resumed:  # the server ignored the range: start over
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                                desc=dest.name, disable=not progress) as bar:
            while True:
                block = resp.read(chunk)
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:
        raise SystemExit(f"download of {url} stopped at {size} of {total} bytes; run again to resume")
    os.replace(part, dest)
    return dest


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m preprocessing.download", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--category", required=True, help="e.g. Baby, Sports_and_Outdoors, Clothing_Shoes_and_Jewelry")
    p.add_argument("--out", type=Path, required=True, help="folder for the raw files")
    p.add_argument("--base-url", default=BASE_URL, help="where the files are (default: %(default)s)")
    p.add_argument("--only", default=",".join(KINDS), help="subset of reviews,meta,images")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; choose from {KINDS}")
    paths = []
    for name in file_names(args.category, kinds):
        base = args.base_url if args.base_url.endswith("/") else args.base_url + "/"
        paths.append(fetch(base + name, args.out / name, progress=not args.no_progress))
    infos = [describe_input(p) for p in paths]
    for info in infos:
        print(f"{info['path']}: {info['bytes']} bytes, sha256 {info['sha256']}")
    return write_manifest(args.out / "download_manifest.json", "download", [], paths,
                          {"category": args.category, "base_url": args.base_url, "files": infos})


if __name__ == "__main__":
    main()
