"""``benchmarks/bench_layout.py`` (issue 16 item 2): NCHW against channels-last, side by side."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_layout import layout_competitor, main, parse_args


def test_quick_run_times_both_layouts_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "layout.json"
    result = main(["--quick", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert [(r["net"], r["batch"], r["compiled"]) for r in saved["rows"]] == [
        ("terradiff-nchw", 2, None),
        ("terradiff-channels_last", 2, None),
    ]
    for row in saved["rows"]:
        assert len(row["step_s"]) == 2 and all(t > 0 for t in row["step_s"])
        assert row["images_per_s"] == pytest.approx(2 / statistics.median(row["step_s"]))
        assert row["share_of_bf16_peak"] > 0


def test_layouts_differ_only_in_memory_format() -> None:
    device = torch.device("cpu")
    nchw = layout_competitor("nchw", 16, device)
    nhwc = layout_competitor("channels_last", 16, device)
    conv = next(m for m in nhwc.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert nchw.net.channels_last is False and nhwc.net.channels_last is True
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 500])
    with torch.no_grad():
        torch.testing.assert_close(nchw(x, t), nhwc(x, t), rtol=1e-4, atol=1e-4)


def test_compiled_sections_are_parsed_and_bad_ones_refused(capsys: pytest.CaptureFixture) -> None:
    args = parse_args(["--compiled", "channels_last:128,nchw:256:regions,nchw:8:autotune:whole"])
    assert args.compiled_list == [
        ("channels_last", 128, "whole", "heuristic"),  # CPU: the heuristic by default
        ("nchw", 256, "regions", "heuristic"),
        ("nchw", 8, "whole", "autotune"),
    ]
    assert parse_args([]).compiled_list[1] == ("nchw", 128, "regions", "heuristic")
    assert parse_args([]).cudnn_list == ["heuristic"]
    assert parse_args(["--cudnn", "autotune,heuristic"]).cudnn_list == ["autotune", "heuristic"]
    assert parse_args(["--quick"]).compiled_list == []
    assert parse_args(["--batches", ""]).batch_list == []  # compiled sections only
    bad_items = ("nhwc:128", "nchw:128:partly", "nchw:x", "nchw:1:whole:2", "nchw:1:whole:regions")
    for bad in (*bad_items, "nchw:1:autotune:heuristic"):
        with pytest.raises(SystemExit) as exc:
            parse_args(["--compiled", bad])
        assert exc.value.code == 2
    assert "LAYOUT:BATCH[:STYLE][:CUDNN]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--cudnn", "fastest"])


def test_eager_sections_time_each_cudnn_choice_and_set_the_flag(tmp_path: Path) -> None:
    before = torch.backends.cudnn.benchmark
    try:
        result = main(["--quick", "--cudnn", "heuristic,autotune"])
        assert [(r["net"], r["cudnn_benchmark"]) for r in result["rows"]] == [
            ("terradiff-nchw", False),
            ("terradiff-channels_last", False),
            ("terradiff-nchw-autotuned", True),
            ("terradiff-channels_last-autotuned", True),
        ]
        comp = layout_competitor("nchw", 16, torch.device("cpu"), "autotune")
        torch.backends.cudnn.benchmark = False
        with torch.no_grad():
            comp(torch.randn(1, 3, 16, 16), torch.tensor([3]))
        assert torch.backends.cudnn.benchmark is True  # each call sets its choice
    finally:
        torch.backends.cudnn.benchmark = before


def test_regional_compiled_section_runs_and_is_recorded(tmp_path: Path) -> None:
    """A compiled section through dynamo's ``eager`` backend (no compiler needed on CI)."""
    out = tmp_path / "layout.json"
    argv = ["--quick", "--compiled", "nchw:2:regions", "--compile-backend", "eager"]
    result = main([*argv, "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows == json.loads(json.dumps(result["rows"]))
    compiled = rows[-1]
    assert (compiled["net"], compiled["compiled"]) == ("terradiff-nchw-compiled-regions", "regions")
    assert compiled["first_call_s"] > 0 and len(compiled["step_s"]) == 2
    assert [r["compiled"] for r in rows[:2]] == [None, None]
    assert compiled["cudnn_benchmark"] is False  # the CPU default: heuristic
