"""Tests of terradiff.data.labels (and the folder scan of terradiff.data.folders) on AID/EuroSAT."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from terradiff.data.datasets import GeoTiffChipDataset, ImageFolderDataset
from terradiff.data.folders import path_key, scan_class_folders
from terradiff.data.labels import (
    NULL_LABEL,
    ClassIndex,
    class_index_for,
    did_you_mean,
    folder_labels,
    read_label_csv,
)
from terradiff.errors import DataError


@pytest.fixture(scope="module")
def aid(shared_data: Path) -> Path:
    return shared_data / "aid"


@pytest.fixture(scope="module")
def eurosat(shared_data: Path) -> Path:
    return shared_data / "eurosat-ms"


def _subfolders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# ---- class names from the real folders -----------------------------------------------------


def test_aid_has_30_classes_as_the_dataset_sees_them(aid: Path) -> None:
    index = ClassIndex.from_folder(aid)
    assert len(index) == 30
    assert list(index) == _subfolders(aid)
    assert index.names[:3] == ("Airport", "BareLand", "BaseballField")
    dataset = ImageFolderDataset(aid, max_images=30, image_size=32)
    assert dataset.classes == list(index.names)  # one rule for datasets and labels


def test_eurosat_train_and_test_have_the_same_10_classes(eurosat: Path) -> None:
    train = ClassIndex.from_folder(eurosat / "train", extensions=(".tif",))
    test = ClassIndex.from_folder(eurosat / "test", extensions=(".tif",))
    assert len(train) == 10 and train == test
    assert list(train) == _subfolders(eurosat / "train")
    assert "SeaLake" in train and "Sea Lake" not in train


def test_folder_labels_are_the_parent_folder(eurosat: Path) -> None:
    labels = folder_labels(eurosat / "train", extensions=(".tif",))
    assert len(labels) == 216
    assert all(path.parent.name == name for path, name in labels.items())
    chips = GeoTiffChipDataset(eurosat / "train")
    index = ClassIndex(tuple(chips.classes))
    for path, label in zip(chips.files, chips.labels, strict=True):
        assert index.lookup(labels[path_key(path)]) == label


def test_folder_labels_keep_only_the_given_classes(eurosat: Path) -> None:
    labels = folder_labels(eurosat / "test", extensions=(".tif",), classes=["Forest", "River"])
    assert set(labels.values()) == {"Forest", "River"}
    with pytest.raises(DataError, match=r"\['Forrest'\] not found .*available classes"):
        folder_labels(eurosat / "test", extensions=(".tif",), classes=["Forrest"])


def test_scan_class_folders_groups_and_sorts(tmp_path: Path) -> None:
    for rel in ("b/x.JPG", "a/2.png", "a/1.png", "top.png", ".hidden/z.png", "a/.h.png", "c/n.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    by_class, names = scan_class_folders(tmp_path, ["png", ".jpg"])
    assert names == ["a", "b"]
    assert [p.name for p in by_class["a"]] == ["1.png", "2.png"]
    assert [p.name for p in by_class[None]] == ["top.png"]
    with pytest.raises(DataError, match="no class sub-folders"):
        ClassIndex.from_folder(tmp_path / "a")
    with pytest.raises(DataError, match="not found"):
        ClassIndex.from_folder(tmp_path / "missing")


# ---- ClassIndex ------------------------------------------------------------------------------


def test_lookup_and_names_round_trip(aid: Path) -> None:
    index = ClassIndex.from_folder(aid)
    for i, name in enumerate(index):
        assert index.lookup(name) == i and index.name(i) == name
    assert index.encode(["Forest", None, "Beach"]) == [11, NULL_LABEL, 3]
    assert index.decode([11, -1, 3]) == ["Forest", None, "Beach"]


def test_wrong_class_name_lists_the_valid_names_and_suggests(aid: Path) -> None:
    index = ClassIndex.from_folder(aid)
    with pytest.raises(DataError) as err:
        index.lookup("forest", where="labels.csv line 3")
    message = str(err.value)
    assert "unknown class 'forest' in labels.csv line 3 (did you mean 'Forest'?)" in message
    assert "the 30 valid classes are" in message and "'Viaduct'" in message
    with pytest.raises(DataError, match=r"did you mean 'StorageTanks'\?"):
        index.lookup("StorageTank")
    with pytest.raises(DataError) as err:
        index.lookup("Volcano")
    assert "did you mean" not in str(err.value) and "'Airport'" in str(err.value)


def test_index_out_of_range_says_the_valid_range() -> None:
    index = ClassIndex(("a", "b"))
    with pytest.raises(DataError, match=r"valid indices are 0..1 .*-1 means no class"):
        index.name(-1)
    with pytest.raises(DataError, match="out of range"):
        index.name(2)


def test_json_round_trip_keeps_the_order() -> None:
    index = ClassIndex(("zeta", "alpha", "Mid"))  # a checkpoint's order is kept, not re-sorted
    again = ClassIndex.from_json(index.to_json())
    assert again == index and again.lookup("alpha") == 1
    assert ClassIndex.from_dict(index.to_dict()) == index
    with pytest.raises(DataError, match="is not valid JSON"):
        ClassIndex.from_json("{class_names: [")
    with pytest.raises(DataError, match=r"ckpt/config.json: 'class_names' must be a list"):
        ClassIndex.from_dict({"names": ["a"]}, source="ckpt/config.json")


def test_invalid_class_lists_are_errors() -> None:
    with pytest.raises(DataError, match="at least one class"):
        ClassIndex(())
    with pytest.raises(DataError, match=r"unique; \['a'\]"):
        ClassIndex(("a", "b", "a"))
    with pytest.raises(DataError, match="non-empty strings"):
        ClassIndex(("a", " "))
    assert ClassIndex.from_names(["b", "a", "b"]).names == ("a", "b")
    assert ClassIndex.from_names(["b", "a", "b"], sort=False).names == ("b", "a")


def test_did_you_mean() -> None:
    assert did_you_mean("sea_lake", ["SeaLake", "River"]) == " (did you mean 'SeaLake'?)"
    assert did_you_mean("Rivr", ["SeaLake", "River"]) == " (did you mean 'River'?)"
    assert did_you_mean("xyz", ["SeaLake", "River"]) == ""


# ---- CSV labels ------------------------------------------------------------------------------


@pytest.fixture
def flat_chips(eurosat: Path, tmp_path: Path) -> list[Path]:
    """Four real EuroSAT chips copied into one flat folder (no class sub-folders)."""
    (tmp_path / "chips").mkdir()
    sources = [next((eurosat / "test" / c).glob("*.tif")) for c in ("Forest", "River", "Highway")]
    sources.append(sorted((eurosat / "test" / "Forest").glob("*.tif"))[1])
    return [Path(shutil.copy(s, tmp_path / "chips" / s.name)) for s in sources]


def test_label_csv_paths_are_relative_to_the_csv(
    flat_chips: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "meta" / "labels.csv"
    csv.parent.mkdir()
    rows = [f"../chips/{p.name},{p.name.split('_')[0]}" for p in flat_chips[:3]]
    rows.append(f"{flat_chips[3]},")  # absolute path, empty class: unlabelled
    csv.write_text("path, class ,gsd\n" + "\n".join(r + ",10" for r in rows) + "\n")
    monkeypatch.chdir(tmp_path / "chips")  # the working directory does not matter
    labels = read_label_csv(csv)
    assert labels == {path_key(p): p.name.split("_")[0] for p in flat_chips[:3]}
    assert class_index_for(labels).names == ("Forest", "Highway", "River")


def test_label_csv_errors(flat_chips: list[Path], tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("file,class\nchips/a.tif,Forest\n")
    with pytest.raises(DataError, match=r"needs the columns 'path' and 'class'; found \['file'"):
        read_label_csv(csv)
    csv.write_text("path,label\nchips/missing.tif,Forest\n")  # 'label' is accepted for 'class'
    with pytest.raises(DataError, match=r"1 file\(s\) that do not exist.*missing.tif"):
        read_label_csv(csv)
    assert read_label_csv(csv, check_files=False)[path_key(tmp_path / "chips/missing.tif")]
    name = flat_chips[0].name
    csv.write_text(f"path,class\nchips/{name},Forest\n./chips/{name},River\n")
    with pytest.raises(DataError, match=r"line 3: .* labelled 'Forest' and 'River'"):
        read_label_csv(csv)
    csv.write_text("path,class\n")
    with pytest.raises(DataError, match="no rows"):
        read_label_csv(csv)
    with pytest.raises(DataError, match="not found"):
        read_label_csv(tmp_path / "nope.csv")
    assert os.path.isabs(str(next(iter(read_label_csv(_one_row(tmp_path, name))))))


def _one_row(folder: Path, name: str) -> Path:
    csv = folder / "one.csv"
    csv.write_text(f"path,class\nchips/{name},Forest\n")
    return csv
