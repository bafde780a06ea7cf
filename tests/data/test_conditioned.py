"""Tests of terradiff.data.conditioned: labels and metadata on real AID/EuroSAT/NAIP items."""

from __future__ import annotations

import json
import math
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from terradiff.batching import collate_batch
from terradiff.data.conditioned import ConditionedDataset, item_gsd_scale
from terradiff.data.datasets import GeoTiffChipDataset, ImageFolderDataset
from terradiff.data.labels import ClassIndex
from terradiff.data.metadata import MetadataSchema
from terradiff.errors import ConfigError, DataError, DataWarning


@pytest.fixture(scope="module")
def eurosat(shared_data: Path) -> Path:
    return shared_data / "eurosat-ms" / "test"


@pytest.fixture(scope="module")
def aid(shared_data: Path) -> Path:
    return shared_data / "aid"


def test_eurosat_items_keep_their_keys_and_gain_label_and_metadata(eurosat: Path) -> None:
    base = GeoTiffChipDataset(eurosat, image_size=32, seed=3)
    data = ConditionedDataset(base, schema=["gsd", "lat", "lon", "month"], from_raster=True)
    assert len(data) == len(base) == 54
    assert data.classes == base.classes and data.labels == base.labels
    assert data.band_names == base.band_names and data.num_bands == 13  # the base's attributes
    for i in (0, 17, 53):
        plain, item = base.get(i, epoch=2), data.get(i, epoch=2)
        assert set(item) == {*plain, "metadata", "present"}
        assert torch.equal(item["image"], plain["image"]) and item["path"] == plain["path"]
        assert item["label"] == plain["label"] >= 0
        assert item["metadata"].shape == (5,) and item["metadata"].dtype == torch.float32
        assert item["present"].tolist() == [True, True, True, False, False]  # no date
        gsd, lat, lon = item["metadata"][:3].tolist()
        assert gsd == pytest.approx((math.log10(10.0) - 1) / 3, abs=2e-3)  # 10 m chips
        assert 35 / 90 < lat < 60 / 90 and -11 / 180 < lon < 30 / 180  # Europe
    data.set_epoch(2)
    assert torch.equal(data[17]["image"], base.get(17, epoch=2)["image"])
    batch = next(iter(DataLoader(data, batch_size=8, collate_fn=collate_batch)))
    assert batch["label"].dtype == torch.long and batch["label"].shape == (8,)
    assert batch["metadata"].shape == (8, 5) and batch["present"].dtype == torch.bool
    assert data.condition_config() == {
        "class_names": base.classes,
        "metadata": {"fields": ["gsd", "lat", "lon", "month_sin", "month_cos"]},
    }


def test_a_checkpoint_class_index_fixes_the_indices_of_a_class_subset(aid: Path) -> None:
    base = ImageFolderDataset(aid, classes=["Forest", "Beach"], max_images=6, image_size=32)
    assert sorted(set(base.labels)) == [0, 1]  # the subset's own numbering
    full = ClassIndex.from_folder(aid)
    data = ConditionedDataset(base, class_index=full)
    assert sorted(set(data.labels)) == [full.lookup("Beach"), full.lookup("Forest")] == [3, 11]
    assert data.classes == list(full.names) and len(data.classes) == 30
    for i in range(len(data)):
        assert full.name(data[i]["label"]) == Path(data[i]["path"]).parent.name
    assert "metadata" not in data[0]
    again = pickle.loads(pickle.dumps(data))  # DataLoader workers pickle the dataset
    assert again[1]["label"] == data[1]["label"] and again.num_bands == 3
    with pytest.raises(DataError, match=r"unknown class 'Beach' in .*the 2 valid classes"):
        ConditionedDataset(base, class_index=ClassIndex(("Forest", "Desert")))


def _flat_copy(eurosat: Path, dest: Path) -> list[Path]:
    dest.mkdir()
    chips = [sorted((eurosat / c).glob("*.tif"))[0] for c in ("Forest", "River", "Highway")]
    return [Path(shutil.copy(c, dest / c.name)) for c in chips]


def test_labels_and_metadata_from_tables(eurosat: Path, tmp_path: Path) -> None:
    chips = _flat_copy(eurosat, tmp_path / "chips")
    base = GeoTiffChipDataset(tmp_path / "chips", image_size=64)
    assert base.classes == [] and base.labels == [-1, -1, -1]
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "path,class\n" + "".join(f"chips/{p.name},{p.stem.split('_')[0]}\n" for p in chips[:2])
    )
    side = tmp_path / "meta.json"
    side.write_text(json.dumps({f"chips/{chips[0].name}": {"date": "2018-07-01", "gsd": 20}}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = ConditionedDataset(
            base, labels=csv, schema=["gsd", "month", "year"], sidecar=side, from_raster=True
        )
    assert [str(w.message)[:50] for w in caught] == [
        f"1 of 3 files have no entry in the label CSV {csv}"[:50],
        f"2 of 3 files have no entry in the metadata sidecar {side}"[:50],
    ]
    by_name = {Path(data[i]["path"]).name: data[i] for i in range(3)}
    assert data.classes == ["Forest", "River"]
    assert by_name[chips[0].name]["label"] == 0 and by_name[chips[1].name]["label"] == 1
    assert by_name[chips[2].name]["label"] == -1  # not in the CSV: no class
    first = by_name[chips[0].name]
    assert first["present"].all()
    assert first["metadata"][0] == pytest.approx((math.log10(20.0) - 1) / 3)  # sidecar wins
    assert first["metadata"][3] == pytest.approx((2018 - 2000) / 50)
    other = by_name[chips[2].name]
    assert other["present"].tolist() == [True, False, False, False]  # gsd from the header only


def test_tables_that_match_no_file_and_bad_values_fail(eurosat: Path, tmp_path: Path) -> None:
    chips = _flat_copy(eurosat, tmp_path / "chips")
    base = GeoTiffChipDataset(tmp_path / "chips")
    with pytest.raises(DataError, match="none of the dataset's 3 files is in the label table"):
        ConditionedDataset(base, labels={tmp_path / "elsewhere.tif": "Forest"})
    bad = {chips[1]: {"cloud_cover": 140}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match=rf"{chips[1].name}: metadata 'cloud_cover' = 140"):
            ConditionedDataset(base, schema=["cloud_cover"], sidecar=bad)
    with pytest.raises(ConfigError, match="need a metadata schema"):
        ConditionedDataset(base, from_raster=True)
    with pytest.raises(DataError, match="has no 'files'"):
        ConditionedDataset(torch.utils.data.TensorDataset(torch.zeros(2)))  # type: ignore[arg-type]


def test_resized_items_scale_the_gsd(shared_data: Path) -> None:
    naip = shared_data / "scenes" / "opengeos-naip"
    base = ImageFolderDataset(naip, image_size=64, crop="resize", include=["*2019*"])
    data = ConditionedDataset(
        base, schema=MetadataSchema(["gsd", "year", "month"]), date_pattern="yyyymmdd"
    )
    item = data[0]
    assert item["image"].shape == (4, 64, 64)
    assert item["present"].tolist() == [False, True, True, True]  # no header read: no gsd
    data = ConditionedDataset(
        base, schema=["gsd", "year"], from_raster=True, date_pattern="yyyymmdd"
    )
    expected = 5.002 * math.sqrt((723 / 64) * (934 / 64))  # a 934x723 scene squeezed to 64x64
    gsd = 10 ** (3 * float(data[0]["metadata"][0]) + 1)
    assert gsd == pytest.approx(expected, rel=1e-3)
    assert data[0]["metadata"][1] == pytest.approx((2019 - 2000) / 50)
    side = {base.files[0]: {"date": "2020-01-31"}}  # a sidecar date replaces the name's
    data = ConditionedDataset(base, schema=["year"], sidecar=side, date_pattern="yyyymmdd")
    assert data[0]["metadata"][0] == pytest.approx((2020 - 2000) / 50)


def test_item_gsd_scale() -> None:
    assert item_gsd_scale(64, 64, 64, "random") == 1.0
    assert item_gsd_scale(600, 600, 150, "resize") == 4.0
    assert item_gsd_scale(200, 100, (50, 50), "resize") == pytest.approx(math.sqrt(8))
    assert item_gsd_scale(32, 48, 64, "center") == 0.5  # upsampled so the short side fits
    assert item_gsd_scale(600, 600, None, "resize") == 1.0
    assert item_gsd_scale(600, 600, 64, "none") == 1.0
