"""Tiny raw Amazon-format inputs, written at test time in the exact formats of the 2014 release."""
import gzip
import json
import struct
from pathlib import Path

import numpy as np

ASINS = [f"B00000000{k}" for k in range(8)]  # 10-character ASINs like Amazon's


def review(user, asin, t, rating=5.0):
    return {"reviewerID": user, "asin": asin, "reviewerName": "Zoë", "helpful": [0, 0],
            "reviewText": "gut — très bien", "overall": rating, "summary": "ok", "unixReviewTime": t,
            "reviewTime": "01 1, 2014"}


def write_reviews(path: Path) -> Path:
    """12 users x 6 of 8 items (rotating), plus a 2-review user and a 1-review item that 5-core removes,
    plus one duplicate review."""
    rows = []
    for u in range(12):
        for j in range(6):
            rows.append(review(f"U{u:02d}", ASINS[(u + j) % 8], 1000 + 10 * u + j))
    rows.append(review("ZZ", ASINS[0], 5))
    rows.append(review("ZZ", ASINS[1], 6))
    rows.append(review("U00", "B0LONELY00", 7))
    rows.append(review("U03", ASINS[3], 99999))  # duplicate of an existing (user, item) pair, later
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


META_LINES = [
    # 2014 style: Python dict literals, unicode, nested categories, missing fields
    "{'asin': 'B000000000', 'title': 'Crème brûlée spoon', 'brand': 'Ünïcode Co', "
    "'categories': [['Baby', 'Feeding'], ['Baby', 'Spoons']], 'description': 'A soft spoon.', 'price': 3.5}",
    "{'asin': 'B000000001', 'title': 'Bottle', 'categories': [['Baby']]}",
    "{'asin': 'B000000002', 'description': 'No title here.', 'related': {'also_bought': ['B000000003']}}",
    "{'asin': 'B000000003', 'title': \"Kid's cup\", 'brand': 'Cupz', 'categories': [['Baby', 'Cups']]}",
    # 2018 style: strict JSON, flat category list
    json.dumps({"asin": "B000000004", "title": "Bib 日本", "brand": "Bibs", "category": ["Baby", "Bibs"]}),
    "{'asin': 'B000000005', 'title': 'Rattle', 'brand': 'Toyz', 'categories': [['Toys']], 'description': ''}",
    "{'asin': 'B000000006', 'title': 'Blanket', 'brand': '', 'categories': []}",
    "{'asin': 'BNOTINDATA', 'title': 'Ignored'}",
    # B000000007 has no metadata at all
]

EXPECTED_TEXT = {
    0: "Crème brûlée spoon. Ünïcode Co. Baby, Feeding, Spoons. A soft spoon.",
    1: "Bottle. Baby",
    2: "No title here.",
    3: "Kid's cup. Cupz. Baby, Cups",
    4: "Bib 日本. Bibs. Baby, Bibs",
    5: "Rattle. Toyz. Toys",
    6: "Blanket",
}


def write_meta(path: Path, lines=META_LINES) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def b_vector(k: int) -> np.ndarray:
    return (np.arange(4096, dtype=np.float32) % 7) * (k + 1) / 10


def write_b(path: Path, items=range(7), extra=True) -> Path:
    with open(path, "wb") as f:
        if extra:
            f.write(b"BNOTINDATA" + struct.pack("<4096f", *np.ones(4096, dtype=np.float32)))
        for k in items:
            f.write(ASINS[k].encode("ascii") + b_vector(k).astype("<f4").tobytes())
    return path


def write_images(folder: Path, items=(0, 1, 2)) -> Path:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for k in items:
        color = (40 * k % 255, 90, 200 - 30 * k)
        Image.new("RGB", (64 + 8 * k, 48), color).save(folder / f"{ASINS[k]}.png")
    return folder
