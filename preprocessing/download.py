"""Download the raw Amazon 2014 files of one category (the only code that touches the network).

    python -m preprocessing.download --category Baby --out raw/

Fetches ``reviews_<Category>_5.json.gz``, ``meta_<Category>.json.gz`` and ``image_features_<Category>.b``
from the dataset's public site over https (``--base-url``), resuming partial downloads (``<file>.part``)
with HTTP range requests, with a progress bar, and reports each file's size and sha256 in
``download_manifest.json``.

Integrity: ``--sha256 FILE=HEX`` (repeatable) or ``--hashes LIST`` (``sha256sum`` output, or the
``download_manifest.json`` of an earlier download) give the expected digests; a file that does not
match, downloaded now or found from before, is renamed ``<file>.mismatch`` and the command fails. Files
without an expected digest are reported with theirs so that the next download can be checked.
Category names are those of the site: Baby, Sports_and_Outdoors, Clothing_Shoes_and_Jewelry, ...
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

from tqdm.auto import tqdm

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.errors import ConfigError, DataFormatError, DownloadError
from idsf_pyg.io import sha256_file, writable_folder

from .common import describe_input, write_manifest

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")

BASE_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
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
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"download of {url} failed: {e.reason}") from None
    except (TimeoutError, OSError) as e:
        raise DownloadError(f"download of {url} failed: {e}; run again to resume") from None
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
        raise DownloadError(f"download of {url} stopped at {size} of {total} bytes; run again to resume")
    os.replace(part, dest)
    return dest


def read_hashes(path: Path) -> Dict[str, str]:
    """Expected digests by file name, from ``sha256sum`` output or an earlier ``download_manifest.json``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataFormatError(path, f"cannot read ({e.strerror or e})") from None
    out: Dict[str, str] = {}
    if text.lstrip().startswith("{"):
        try:
            files = json.loads(text)["files"]
            for f in files:
                out[Path(f["path"]).name] = f["sha256"]
        except (ValueError, KeyError, TypeError) as e:
            raise DataFormatError(path, f"not a download manifest with 'files' [{{path, sha256}}] ({e})") from None
    else:
        for line_no, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip() or raw.startswith("#"):
                continue
            parts = raw.split()
            if len(parts) != 2:
                raise DataFormatError(path, f"expected '<sha256>  <file name>', got {raw!r}", line_no)
            out[Path(parts[1].lstrip("*")).name] = parts[0]
    for name, digest in out.items():
        if not _HEX.match(digest):
            raise DataFormatError(path, f"{digest!r} is not a sha256 digest (64 hex digits)", field=name)
    return {k: v.lower() for k, v in out.items()}


def parse_sha256_options(items: List[str]) -> Dict[str, str]:
    out = {}
    for item in items:
        name, sep, digest = item.partition("=")
        if not sep or not _HEX.match(digest.strip()):
            raise ConfigError(f"{item!r}: expected FILE=<64 hex digits>", "--sha256")
        out[Path(name.strip()).name] = digest.strip().lower()
    return out


def verify(path: Path, expected: Optional[str]) -> str:
    """sha256 of ``path``; if it differs from ``expected``, the file is set aside and an error raised."""
    digest = sha256_file(path)
    if expected is not None and digest != expected:
        bad = path.with_name(path.name + ".mismatch")
        os.replace(path, bad)
        raise DownloadError(f"{path.name}: sha256 {digest} does not match the expected {expected}; the file was "
                            f"moved to {bad} (a corrupt or changed download: delete it and run again)")
    return digest


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m preprocessing.download", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--category", required=True, help="e.g. Baby, Sports_and_Outdoors, Clothing_Shoes_and_Jewelry")
    p.add_argument("--out", type=Path, required=True, help="folder for the raw files")
    p.add_argument("--base-url", default=BASE_URL, help="where the files are (default: %(default)s)")
    p.add_argument("--only", default=",".join(KINDS), help="subset of reviews,meta,images")
    p.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                   help="expected sha256 of a file (repeatable); a mismatch is an error")
    p.add_argument("--hashes", type=Path, help="expected digests: sha256sum output or an earlier download_manifest.json")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"unknown {unknown}; choose from {', '.join(KINDS)}", "--only")
    if not re.match(r"^[A-Za-z0-9_&,-]+$", args.category):
        raise ConfigError(f"{args.category!r} is not a category name of the site (e.g. Baby)", "--category")
    expected = read_hashes(args.hashes) if args.hashes else {}
    expected.update(parse_sha256_options(args.sha256))
    scheme = args.base_url.split(":", 1)[0].lower() if ":" in args.base_url else ""
    if scheme in ("http", "file"):
        print(f"warning: {args.base_url} is {'plain http' if scheme == 'http' else 'a local file:// address'}, not "
              "the dataset's https site; the files are checked only if digests are given", file=sys.stderr)
    writable_folder(args.out, "--out")
    paths, infos = [], []
    for name in file_names(args.category, kinds):
        base = args.base_url if args.base_url.endswith("/") else args.base_url + "/"
        path = fetch(base + name, args.out / name, progress=not args.no_progress)
        digest = verify(path, expected.get(name))
        paths.append(path)
        infos.append({**describe_input(path), "verified": name in expected})
        print(f"{path}: {infos[-1]['bytes']} bytes, sha256 {digest}"
              + (" (matches the expected digest)" if name in expected else " (no expected digest given)"))
    return write_manifest(args.out / "download_manifest.json", "download", [], paths,
                          {"category": args.category, "base_url": args.base_url, "files": infos})


if __name__ == "__main__":
    entry_point(main)
