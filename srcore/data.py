"""Benchmark folders (LR/HR pairs) and random crops for calibration and training.

Why: evaluation must accept the standard benchmark layout (``HR/`` + ``LR_bicubic/X<s>/``) but also
any HR-only folder (B100, Urban100, Manga109 or a user's photos), making the LR itself with the
MATLAB-compatible bicubic of :mod:`srcore.imresize` so that PSNR stays comparable with papers.
Calibration and training need reproducible random patches; :class:`CropSampler` draws them from
one seeded ``numpy.random.Generator`` whose state can be saved and restored with a checkpoint.

Broken files never stop a run silently: an unreadable image is either skipped with a
``logging.warning`` naming it, or raised as :class:`~srcore.images.ImageReadError`; structural
problems (missing folder, no images, bad scale) raise :class:`DatasetError`.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from srcore.images import ImageReadError, image_size, load_rgb
from srcore.imresize import imresize, mod_crop

__all__ = [
    "IMAGE_EXTENSIONS",
    "SCALES",
    "CropSampler",
    "DatasetError",
    "ImagePair",
    "PairStream",
    "check_scale",
    "dataset_name",
    "list_images",
    "load_benchmark",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
SCALES = (2, 3, 4)
_EXT_TEXT = "/".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))


class DatasetError(ValueError):
    """A data folder or sampling request cannot be used (missing, empty, bad settings)."""


@dataclass(frozen=True, eq=False)
class ImagePair:
    """One benchmark image.

    Attributes:
        name: file stem of the HR image (e.g. ``"baby"``).
        lr: uint8 (h, w, 3) low-resolution input.
        hr: uint8 (h * s, w * s, 3) ground truth, cropped to exactly ``scale`` times the LR.
    """

    name: str
    lr: np.ndarray
    hr: np.ndarray


def check_scale(scale: Any) -> int:
    """Return ``scale`` if it is an int in :data:`SCALES`, else raise :class:`DatasetError`."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or int(scale) not in SCALES:
        raise DatasetError(f"scale must be one of the integers {SCALES}, got {scale!r}")
    return int(scale)


def dataset_name(folder: str | os.PathLike[str]) -> str:
    """Name of a benchmark: its folder name (``.../benchmark/Set5`` -> ``"Set5"``)."""
    return Path(folder).absolute().name


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Image files (by extension, case-insensitive) in ``folder``, sorted; hidden files skipped.

    Args:
        folder: an existing folder.
        recursive: also look in sub-folders (hidden sub-folders are skipped).

    Returns:
        Sorted paths, so that the order (and every seeded draw over it) is deterministic.
    """
    root = Path(folder)
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = []
    for path in candidates:
        rel_parts = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel_parts):
            continue
        if _is_image(path):
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _handle(on_error: str, exc: Exception, skipped: list[Path], path: Path) -> None:
    """Skip (warning) or raise a per-image problem according to ``on_error``."""
    if on_error == "raise":
        raise exc
    logger.warning("skipping %s: %s", path, exc)
    skipped.append(path)


def load_benchmark(
    folder: str | os.PathLike[str],
    scale: int,
    on_error: Literal["skip", "raise"] = "skip",
) -> list[ImagePair]:
    """Load a benchmark folder as LR/HR pairs.

    Layouts:
        A. ``folder/HR/<stem>.<ext>`` with ``folder/LR_bicubic/X<s>/<stem>x<s>.<ext>``: both are
           read and HR is cropped (bottom/right) to ``LR.h * s x LR.w * s``.
        B. ``folder/HR/`` images without a matching LR file (or no ``LR_bicubic`` at all), or a
           folder holding the images directly: HR is mod-cropped to a multiple of ``s`` and the LR
           is made with ``imresize(hr, 1 / s)`` (MATLAB bicubic, bit-exact with the shipped
           files). One info message says how many LR images were generated.

    Args:
        folder: the benchmark folder (its name is the dataset name, see :func:`dataset_name`).
        scale: 2, 3 or 4.
        on_error: ``"skip"``: log a warning naming an unusable image and go on; ``"raise"``:
            raise for it (:class:`ImageReadError` if unreadable, :class:`DatasetError` if too small).

    Returns:
        Pairs sorted by name, uint8 HxWx3 arrays.

    Raises:
        DatasetError: missing folder, no images, bad ``scale`` or ``on_error``, duplicate names,
            or no usable image at all.
        ImageReadError: with ``on_error="raise"``, an unreadable image.
    """
    s = check_scale(scale)
    if on_error not in ("skip", "raise"):
        raise DatasetError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(
            f"benchmark folder {root} does not exist or is not a folder (expected HR/ + "
            f"LR_bicubic/X{s}/, or a folder of {_EXT_TEXT} images)"
        )
    hr_dir = root / "HR" if (root / "HR").is_dir() else root
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise DatasetError(f"no images ({_EXT_TEXT}) found in {hr_dir}")

    by_name: dict[str, Path] = {}
    for path in hr_files:
        if path.stem in by_name:
            raise DatasetError(f"two HR images share the name {path.stem!r}: {by_name[path.stem]} and {path}")
        by_name[path.stem] = path

    lr_dir = root / "LR_bicubic" / f"X{s}"
    lr_files = {p.stem: p for p in list_images(lr_dir)} if lr_dir.is_dir() else {}

    pairs: list[ImagePair] = []
    skipped: list[Path] = []
    generated = 0
    for name in sorted(by_name):
        hr_path = by_name[name]
        lr_path = lr_files.get(f"{name}x{s}")
        try:
            hr = load_rgb(hr_path)
            if lr_path is not None:
                lr = load_rgb(lr_path)
                need_h, need_w = lr.shape[0] * s, lr.shape[1] * s
                if hr.shape[0] < need_h or hr.shape[1] < need_w:
                    raise DatasetError(
                        f"HR image {hr_path} is {hr.shape[1]}x{hr.shape[0]} px, smaller than "
                        f"{s} x its LR {lr_path} ({lr.shape[1]}x{lr.shape[0]} px)"
                    )
                hr = hr[:need_h, :need_w]
            else:
                if hr.shape[0] < s or hr.shape[1] < s:
                    raise DatasetError(
                        f"HR image {hr_path} is {hr.shape[1]}x{hr.shape[0]} px, smaller than the "
                        f"scale {s}: its x{s} LR image would be empty"
                    )
                hr = mod_crop(hr, s)
                lr = imresize(hr, 1.0 / s)
                generated += 1
        except (ImageReadError, DatasetError) as exc:
            _handle(on_error, exc, skipped, hr_path)
            continue
        pairs.append(ImagePair(name=name, lr=np.ascontiguousarray(lr), hr=np.ascontiguousarray(hr)))

    if generated:
        logger.info(
            "%s x%d: generated %d LR image(s) with MATLAB-compatible bicubic imresize (no %s file)",
            dataset_name(root), s, generated, lr_dir,
        )
    if not pairs:
        raise DatasetError(f"none of the {len(hr_files)} images in {hr_dir} could be used (all skipped)")
    return pairs


def _as_folder_list(folders: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], what: str) -> list[Path]:
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    out = [Path(f) for f in folders]
    for folder in out:
        if not folder.is_dir():
            raise DatasetError(f"{what} folder {folder} does not exist or is not a folder")
    return out


@dataclass(frozen=True)
class _Source:
    path: Path
    is_hr: bool


class CropSampler:
    """Seeded random patches from folders of images, for calibration (LR) and training (pairs).

    Every draw (image, position, augmentation) comes from one ``numpy.random.Generator``, so the
    same seed gives the same crops and :meth:`state_dict` / :meth:`load_state_dict` resume a run
    exactly. Images are decoded on first use and kept in memory.

    An HR source gives an HR patch of ``lr_size * scale`` px and its LR made with the MATLAB bicubic
    (``imresize(patch, 1 / scale)``); an LR source (e.g. official DIV2K LR files) gives an LR patch
    of ``lr_size`` px directly. Augmentation (BasicSR's ``augment``): random horizontal flip,
    vertical flip and transpose, i.e. the 8 dihedral transforms, the same for LR and HR.

    Args:
        hr_folders: folders (searched recursively) of high-resolution images.
        lr_folders: folders (searched recursively) of low-resolution images, LR-only sampling.
        scale: 2, 3 or 4.
        lr_size: LR patch side in pixels (> 0).
        seed: seed of the generator.
        augment: apply the random dihedral transform.

    Raises:
        DatasetError: no folders, a missing folder, bad ``scale``/``lr_size``, no readable image,
            or no image large enough for a patch.
    """

    def __init__(
        self,
        hr_folders: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] = (),
        lr_folders: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] = (),
        scale: int = 4,
        lr_size: int = 64,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        self.scale = check_scale(scale)
        if isinstance(lr_size, bool) or not isinstance(lr_size, (int, np.integer)) or lr_size < 1:
            raise DatasetError(f"lr_size must be a positive integer, got {lr_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
        self.lr_size = int(lr_size)
        self.hr_size = self.lr_size * self.scale
        self.seed = int(seed)
        self.augment = bool(augment)
        hr_dirs = _as_folder_list(hr_folders, "HR")
        lr_dirs = _as_folder_list(lr_folders, "LR")
        if not hr_dirs and not lr_dirs:
            raise DatasetError("CropSampler needs at least one folder in hr_folders or lr_folders")

        found = 0
        unreadable = 0
        too_small: list[Path] = []
        sources: list[_Source] = []
        for folders, is_hr in ((hr_dirs, True), (lr_dirs, False)):
            need = self.hr_size if is_hr else self.lr_size
            for folder in folders:
                for path in list_images(folder, recursive=True):
                    found += 1
                    try:
                        h, w = image_size(path)
                    except ImageReadError as exc:
                        logger.warning("skipping %s", exc)
                        unreadable += 1
                        continue
                    if h < need or w < need:
                        too_small.append(path)
                        continue
                    sources.append(_Source(path, is_hr))
        folder_text = ", ".join(str(f) for f in hr_dirs + lr_dirs)
        if found == 0:
            raise DatasetError(f"no images ({_EXT_TEXT}) found in {folder_text}")
        if too_small:
            logger.info(
                "skipping %d image(s) smaller than the patch (HR %d px, LR %d px), e.g. %s",
                len(too_small), self.hr_size, self.lr_size, too_small[0],
            )
        if not sources:
            raise DatasetError(
                f"no usable image in {folder_text}: {found} found, {unreadable} unreadable, "
                f"{len(too_small)} smaller than the patch (HR sources need {self.hr_size} px, "
                f"LR sources {self.lr_size} px per side)"
            )
        self._sources = sources
        self._hr_index = np.array([i for i, src in enumerate(sources) if src.is_hr], dtype=np.int64)
        self._all_index = np.arange(len(sources), dtype=np.int64)
        self._cache: dict[Path, np.ndarray] = {}
        self._bad: set[Path] = set()
        self._rng = np.random.default_rng(self.seed)

    # -- introspection -------------------------------------------------------------------------

    @property
    def hr_files(self) -> list[Path]:
        """Usable HR source files, in sampling order."""
        return [src.path for src in self._sources if src.is_hr]

    @property
    def lr_files(self) -> list[Path]:
        """Usable LR source files, in sampling order."""
        return [src.path for src in self._sources if not src.is_hr]

    def __len__(self) -> int:
        return len(self._sources)

    # -- resume --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Generator state plus the settings it is only valid for (JSON/pickle friendly)."""
        return {
            "rng": self._rng.bit_generator.state,
            "num_sources": len(self._sources),
            "scale": self.scale,
            "lr_size": self.lr_size,
            "augment": self.augment,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, so that the following draws repeat the saved run's.

        Raises:
            ValueError: the state is malformed or was saved with other settings/images.
        """
        if not isinstance(state, dict) or "rng" not in state:
            raise ValueError("CropSampler state must be a dict from state_dict() with an 'rng' entry")
        for key, mine in (("scale", self.scale), ("lr_size", self.lr_size),
                          ("augment", self.augment), ("num_sources", len(self._sources))):
            if key in state and state[key] != mine:
                raise ValueError(f"CropSampler state has {key}={state[key]!r}, this sampler has {mine!r}")
        bit_state = state["rng"]
        expected = type(self._rng.bit_generator).__name__
        if not isinstance(bit_state, dict) or bit_state.get("bit_generator") != expected:
            raise ValueError(f"CropSampler state 'rng' must be a {expected} state dict")
        self._rng.bit_generator.state = bit_state

    # -- sampling ------------------------------------------------------------------------------

    def _image(self, src: _Source) -> np.ndarray | None:
        """Decoded image (cached), or None if it cannot be used (warned once)."""
        cached = self._cache.get(src.path)
        if cached is not None:
            return cached
        if src.path in self._bad:
            return None
        need = self.hr_size if src.is_hr else self.lr_size
        try:
            img = load_rgb(src.path)
            if img.shape[0] < need or img.shape[1] < need:
                raise ImageReadError(src.path, f"decoded size {img.shape[1]}x{img.shape[0]} < {need} px")
        except ImageReadError as exc:
            logger.warning("skipping %s", exc)
            self._bad.add(src.path)
            return None
        self._cache[src.path] = img
        return img

    def _draw_image(self, pool: np.ndarray) -> tuple[_Source, np.ndarray]:
        """Pick an image uniformly from ``pool``; a bad image is redrawn (deterministically)."""
        while True:
            if self._bad and all(self._sources[i].path in self._bad for i in pool):
                raise DatasetError("every source image failed to decode; see the warnings above")
            src = self._sources[int(pool[self._rng.integers(len(pool))])]
            img = self._image(src)
            if img is not None:
                return src, img

    def _crop(self, img: np.ndarray, size: int) -> np.ndarray:
        top = int(self._rng.integers(img.shape[0] - size + 1))
        left = int(self._rng.integers(img.shape[1] - size + 1))
        return img[top:top + size, left:left + size]

    def _draw_flips(self) -> tuple[bool, bool, bool]:
        if not self.augment:
            return False, False, False
        hflip, vflip, rot = (bool(b) for b in self._rng.random(3) < 0.5)
        return hflip, vflip, rot

    @staticmethod
    def _flip(flips: tuple[bool, bool, bool], *arrays: np.ndarray) -> list[np.ndarray]:
        hflip, vflip, rot = flips
        out = []
        for arr in arrays:
            if hflip:
                arr = arr[:, ::-1]
            if vflip:
                arr = arr[::-1]
            if rot:
                arr = arr.transpose(1, 0, 2)
            out.append(arr)
        return out

    def reseed(self, *key: int) -> None:
        """Restart the generator at ``(seed, *key)``: a training step's crops then depend only on its index.

        That makes a crop stream independent of how many worker processes draw it
        (:class:`PairStream`) and lets a checkpoint resume from the step number alone.
        """
        self._rng = np.random.default_rng([self.seed, *key])

    def _draw_patch(self, src: _Source, img: np.ndarray) -> np.ndarray:
        """A random crop: HR size from an HR source (its LR is made only if the row is kept), else LR size."""
        return self._crop(img, self.hr_size if src.is_hr else self.lr_size)

    def _to_lr(self, src: _Source, patch: np.ndarray) -> np.ndarray:
        return imresize(patch, 1.0 / self.scale) if src.is_hr else patch

    def _kept(self, n: int, rows: slice | None) -> range:
        kept = range(n)[rows] if rows is not None else range(n)
        if not kept:
            raise DatasetError(f"rows {rows} select none of the {n} patches")
        return kept

    @staticmethod
    def _batch(stacked: np.ndarray) -> torch.Tensor:
        """(n, p, p, 3) uint8 -> (n, 3, p, p) float32 in [0, 1]."""
        return torch.from_numpy(stacked).permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()

    @staticmethod
    def _check_n(n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DatasetError(f"number of patches must be a positive integer, got {n!r}")
        return int(n)

    def sample_lr(self, n: int, rows: slice | None = None) -> torch.Tensor:
        """``n`` LR patches from all sources (calibration input), or only ``rows`` of them.

        ``rows`` is how data-parallel ranks share a batch (:meth:`srcore.distributed.Distributed.shard`):
        the generator advances as for all ``n`` patches, so the ranks' rows together are exactly
        the one-process batch and the next draw is the same everywhere; only kept rows are made.

        Returns:
            float32 tensor (len(rows), 3, lr_size, lr_size) with values in [0, 1].
        """
        kept = self._kept(self._check_n(n), rows)
        patches = []
        for i in range(n):
            src, img = self._draw_image(self._all_index)
            patch, flips = self._draw_patch(src, img), self._draw_flips()
            if i in kept:
                patches.extend(self._flip(flips, self._to_lr(src, patch)))
        return self._batch(np.stack(patches))

    def sample_pairs(self, n: int, rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` LR/HR training pairs from the HR sources, with the same augmentation on both.

        ``rows`` keeps only those pairs of the ``n`` drawn, as in :meth:`sample_lr`.

        Returns:
            ``(lr, hr)``: float32 tensors (n, 3, p, p) and (n, 3, p * scale, p * scale) in [0, 1],
            ``p = lr_size`` (``len(rows)`` instead of n when given).

        Raises:
            DatasetError: there is no HR source.
        """
        lr, hr = self.draw_pairs(n, rows)
        return self._batch(lr), self._batch(hr)

    def draw_pairs(self, n: int, rows: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample_pairs` as uint8 ``(n, p, p, 3)`` and ``(n, p*s, p*s, 3)`` arrays (cheap to pickle)."""
        kept = self._kept(self._check_n(n), rows)
        if self._hr_index.size == 0:
            raise DatasetError("sample_pairs needs HR images, but this CropSampler has only LR sources")
        lrs, hrs = [], []
        for i in range(n):
            src, img = self._draw_image(self._hr_index)
            hr, flips = self._draw_patch(src, img), self._draw_flips()
            if i in kept:
                lr, hr = self._flip(flips, self._to_lr(src, hr), hr)
                lrs.append(lr)
                hrs.append(hr)
        return np.stack(lrs), np.stack(hrs)


_WORKER_SAMPLER: CropSampler | None = None


def _init_worker(sampler_args: dict[str, Any]) -> None:
    global _WORKER_SAMPLER
    _WORKER_SAMPLER = CropSampler(**sampler_args)


def _draw_step(step: int, n: int, rows: slice | None) -> tuple[np.ndarray, np.ndarray]:
    _WORKER_SAMPLER.reseed(step)
    return _WORKER_SAMPLER.draw_pairs(n, rows)


class PairStream:
    """Training batches by step index, optionally drawn ahead by worker processes.

    Why: the MATLAB bicubic of a batch of 32 HR crops takes about half a second in one process,
    longer than a GPU training step. Batch ``i`` is always the pairs of a :class:`CropSampler`
    reseeded with ``i`` (:meth:`CropSampler.reseed`), so the stream is the same with 0 or 16
    workers and resumes from a step number alone.

    Args:
        sampler_args: keyword arguments of :class:`CropSampler` (must include HR folders).
        batch_size: pairs per batch.
        start: index of the first batch.
        workers: processes drawing batches ahead (0: draw in this process, on demand).
        rows: only these rows of each batch (a data-parallel rank's share, see
            :meth:`CropSampler.sample_lr`); None: all of them.
    """

    def __init__(self, sampler_args: dict[str, Any], batch_size: int, start: int = 0, workers: int = 0,
                 rows: slice | None = None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise DatasetError(f"workers must be a non-negative integer, got {workers!r}")
        self._sampler = CropSampler(**sampler_args)  # validates the folders here, with a clear error
        self._n = CropSampler._check_n(batch_size)
        self._rows = rows
        self._sampler._kept(self._n, rows)  # an empty share fails here, not in a worker
        self._next = self._submitted = start
        self._pending: collections.deque = collections.deque()
        self._ahead = 2 * workers
        self._pool = None
        if workers:
            # spawn, not fork: the parent may hold CUDA state that a forked child must not touch.
            self._pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (sampler_args,))

    def __iter__(self) -> PairStream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pool is None:
            self._sampler.reseed(self._next)
            lr, hr = self._sampler.draw_pairs(self._n, self._rows)
        else:
            while len(self._pending) < self._ahead:
                self._pending.append(self._pool.apply_async(_draw_step, (self._submitted, self._n, self._rows)))
                self._submitted += 1
            lr, hr = self._pending.popleft().get()
        self._next += 1
        return CropSampler._batch(lr), CropSampler._batch(hr)

    def close(self) -> None:
        """Let the batches drawn ahead finish, then stop the workers.

        Not ``Pool.terminate``: a worker it kills while writing a batch to the result pipe keeps the pipe's
        lock forever, and the pool's task thread then waits for it in ``terminate`` (it hung CI once; a loop of
        draw-one-then-close hung within 10 tries on this host). The batches ahead are at most 2 per worker.
        """
        if self._pool is not None:
            pool, self._pool = self._pool, None
            while self._pending:
                self._pending.popleft().wait()
            pool.close()
            pool.join()

    def __enter__(self) -> PairStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
