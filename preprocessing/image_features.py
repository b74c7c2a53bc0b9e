"""Item image features aligned to the item ids, two routes.

    # (a) the Amazon 2014 image_features_<Category>.b file (10-byte ASIN + 4096 little-endian float32 each)
    python -m preprocessing.image_features --from-b raw/image_features_Baby.b --data data/baby
    # (b) a torchvision CNN over a folder of item images named <asin>.<jpg|png|...>
    python -m preprocessing.image_features --images raw/images --weights resnet50.pth --data data/baby

Route (b) loads the CNN's weights from the given file (nothing is downloaded); ``--random-weights``
runs an untrained network instead, for tests, and the manifest says so. The pooled features (2048-d
for ResNet-50) are written. Items with no record or image get the mean of the others (counted in
``manifest_image.json``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.errors import ConfigError, DataFormatError

from .common import BadRecords, check_outputs, check_positive, describe_input, read_item_map, save_npy, write_manifest

ASIN_BYTES, B_DIM = 10, 4096
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def read_b_file(path: Path, asins: List[str], bad: BadRecords) -> Tuple[np.ndarray, np.ndarray, int]:
    """Features of ``asins`` from a ``.b`` file: (matrix, found mask, records read)."""
    index = {a: k for k, a in enumerate(asins)}
    feats = np.zeros((len(asins), B_DIM), dtype=np.float32)
    found = np.zeros(len(asins), dtype=bool)
    record = ASIN_BYTES + 4 * B_DIM
    n = 0
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataFormatError(path, f"cannot read file ({e.strerror or e})") from None
    with f:
        while True:
            chunk = f.read(record)
            if not chunk:
                break
            if len(chunk) < record:
                bad(DataFormatError(path, f"truncated record {n} (byte offset {n * record}): {len(chunk)} of "
                                          f"{record} bytes"))
                break
            n += 1
            try:
                asin = chunk[:ASIN_BYTES].decode("ascii").strip()
            except UnicodeDecodeError:
                bad(DataFormatError(path, f"record {n - 1} (byte offset {(n - 1) * record}): ASIN is not ASCII"))
                continue
            k = index.get(asin)
            if k is None or found[k]:
                continue
            vec = np.frombuffer(chunk, dtype="<f4", offset=ASIN_BYTES)
            if not np.isfinite(vec).all():
                bad(DataFormatError(path, f"record {n - 1} ({asin}): NaN/inf values"))
                continue
            feats[k] = vec
            found[k] = True
    return feats, found, n


def build_cnn(arch: str, weights: Optional[Path], random_weights: bool):
    import torch
    import torchvision
    if (weights is None) == (not random_weights):
        raise ConfigError("give exactly one of --weights FILE (the CNN's state dict) or --random-weights",
                          "--weights")
    ctor = getattr(torchvision.models, arch, None)
    if ctor is None or not callable(ctor) or arch.startswith("_"):
        raise ConfigError(f"unknown torchvision model {arch!r} (e.g. resnet50, resnet18)", "--arch")
    model = ctor(weights=None)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # missing, truncated, or pickled code that weights_only refuses
            raise DataFormatError(weights, f"cannot read as a torch state dict ({type(e).__name__}: "
                                  f"{str(e)[:200]})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise DataFormatError(weights, f"expected a state dict (parameter name -> tensor), got "
                                  f"{type(state).__name__}")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise DataFormatError(weights, f"does not fit torchvision's {arch}: {str(e).splitlines()[0]}") from None
    model.fc = torch.nn.Identity()  # pooled features
    return model.eval()


def cnn_features(images: Path, asins: List[str], model, batch_size: int, device: str,
                 bad: BadRecords) -> Tuple[np.ndarray, np.ndarray]:
    import torch
    from PIL import Image, UnidentifiedImageError
    from torchvision import transforms
    from tqdm.auto import tqdm

    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    by_stem = {}
    for f in sorted(images.iterdir()):
        if f.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(f.stem, f)
    todo = [(k, by_stem[a]) for k, a in enumerate(asins) if a in by_stem]
    model = model.to(device)
    out: Dict[int, np.ndarray] = {}
    for start in tqdm(range(0, len(todo), batch_size), desc="images", leave=False):
        batch, ids = [], []
        for k, f in todo[start:start + batch_size]:
            try:
                with Image.open(f) as im:
                    batch.append(tf(im.convert("RGB")))
                ids.append(k)
            except (UnidentifiedImageError, OSError, ValueError) as e:
                bad(DataFormatError(f, f"unreadable image ({e})"))
        if batch:
            with torch.no_grad():
                feats = model(torch.stack(batch).to(device)).flatten(1).cpu().numpy()
            out.update(zip(ids, feats))
    dim = next(iter(out.values())).shape[0] if out else 0
    matrix = np.zeros((len(asins), dim), dtype=np.float32)
    found = np.zeros(len(asins), dtype=bool)
    for k, v in out.items():
        matrix[k], found[k] = v, True
    return matrix, found


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m preprocessing.image_features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-b", type=Path, help="image_features_<Category>.b (route a)")
    src.add_argument("--images", type=Path, help="folder of <asin>.<ext> images (route b)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder holding item_list.txt")
    p.add_argument("--arch", default="resnet50", help="torchvision model for --images (default: %(default)s)")
    p.add_argument("--weights", type=Path, help="state-dict file of --arch (route b)")
    p.add_argument("--random-weights", action="store_true", help="untrained CNN (tests only; recorded)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", default="image_feat.npy", help="file name in --data (default: %(default)s)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad records/images instead of failing")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    check_positive("--batch-size", args.batch_size)
    out = args.data / args.output
    manifest_path = args.data / "manifest_image.json"
    check_outputs([out, manifest_path], args.overwrite)
    asins = read_item_map(args.data)
    bad = BadRecords(args.skip_bad)
    if args.from_b is not None:
        feats, found, n = read_b_file(args.from_b, asins, bad)
        inputs = [describe_input(args.from_b)]
        details: Dict[str, Any] = {"route": "image_features .b file", "records_read": n}
    else:
        if not args.images.is_dir():
            raise DataFormatError(args.images, "not a folder of images")
        model = build_cnn(args.arch, args.weights, args.random_weights)
        feats, found = cnn_features(args.images, asins, model, args.batch_size, args.device, bad)
        inputs = [describe_input(args.weights)] if args.weights else []
        details = {"route": "torchvision CNN", "arch": args.arch, "images_dir": str(args.images),
                   "weights": str(args.weights) if args.weights else
                   "RANDOM (untrained network: not real image features)"}
    if not found.any():
        raise DataFormatError(args.from_b or args.images, "no item of item_list.txt has an image feature")
    missing = np.flatnonzero(~found)
    feats[missing] = feats[found].mean(0)
    save_npy(out, feats)
    manifest = write_manifest(manifest_path, "image_features", inputs, [out], {
        **details, "dim": int(feats.shape[1]), "items": len(asins), "items_without_image": int(missing.size),
        "missing_fill": "mean of the other items' features",
        "missing_asins": [asins[k] for k in missing[:100].tolist()], **bad.report()})
    print(f"wrote {out}: {feats.shape}, {missing.size} items without image (mean-filled)")
    return manifest


if __name__ == "__main__":
    entry_point(main)
