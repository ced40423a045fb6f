"""The one COCO-metrics reader (both generations' ``tools/test.py`` output), tables and comparison.

Host-free: runs on both stacks. The real outputs are parsed in the stock-tool
tests of each generation; here the layouts are written out as MMPose prints them.
"""
from __future__ import annotations

import pytest

from resnest_plugin.coco_metrics import (COCO_KEYPOINT_STATS, all_within, compare, format_ap_table,
                                         format_comparison, parse_test_output, strip_prefix)

#: An mmengine test-epoch line as MMPose 1.3's tools/test.py logs it (values 0.1 ... 1.0).
MMPOSE1_LINE = ("12/03 10:00:00 - mmengine - INFO - Epoch(test) [2/2]    "
                + "  ".join(f"coco/{key}: {(i + 1) / 10:.6f}" for i, key in enumerate(COCO_KEYPOINT_STATS))
                + "  data_time: 0.1000  time: 2.0000")


def test_comparison_tolerance_and_table() -> None:
    expected = {"a": {"AP": 0.721, "AR": 0.776}, "b": {"AP": 0.737}}
    within = compare({"a": {"AP": 0.723, "AR": 0.7}, "b": {"AP": 0.7351}}, expected)
    assert all_within(within) and [round(c.ap_diff, 4) for c in within] == [0.002, -0.0019]
    outside = compare({"a": {"AP": 0.7185}}, expected)
    assert not all_within(outside) and not all_within([])
    table = format_comparison(within + outside)
    assert "| a | 0.723 / 0.721 |" in table and "NO (> 0.002)" in table
    with pytest.raises(ValueError, match="no published AP for model 'c'"):
        compare({"c": {"AP": 0.5}}, expected)
    with pytest.raises(ValueError, match="tolerance -0.1 is negative"):
        compare({"a": {"AP": 0.5}}, expected, tolerance=-0.1)


def test_parse_test_output_reads_mmpose0_lines() -> None:
    output = "\n".join(["noise", " Average Precision  (AP) @[ IoU=0.50:0.95 ...] =  0.721"] +
                       [f"{key}: 0.{i}" for i, key in enumerate(sorted(COCO_KEYPOINT_STATS))])
    metrics = parse_test_output(output)
    assert list(metrics) == list(COCO_KEYPOINT_STATS) and metrics["AP"] == 0.0 and metrics["AR .75"] == 0.9
    with pytest.raises(ValueError, match="lacks the COCO statistics"):
        parse_test_output("AP: 0.5\n")


def test_parse_test_output_reads_the_mmpose1_epoch_line_and_the_last_evaluation_wins() -> None:
    first = MMPOSE1_LINE.replace("coco/AP: 0.100000", "coco/AP: 0.050000")
    metrics = parse_test_output("\n".join(["loading annotations", first, "noise", MMPOSE1_LINE]))
    assert list(metrics) == list(COCO_KEYPOINT_STATS)
    assert metrics["AP"] == 0.1 and metrics["AR (L)"] == 1.0 and metrics["AP (M)"] == 0.4


def test_parse_test_output_names_the_missing_statistics_and_quotes_the_output() -> None:
    partial = MMPOSE1_LINE.replace("coco/AR (M): 0.900000  ", "")
    with pytest.raises(ValueError, match=r"lacks the COCO statistics \['AR \(M\)'\]") as error:
        parse_test_output(partial + "\nTraceback: the evaluation died")
    assert "Traceback: the evaluation died" in str(error.value)


def test_strip_prefix_turns_mmpose1_json_keys_into_the_bare_names() -> None:
    saved = {f"coco/{key}": 0.5 for key in COCO_KEYPOINT_STATS}
    assert strip_prefix(saved) == {key: 0.5 for key in COCO_KEYPOINT_STATS}
    assert strip_prefix({"AP": 0.7}) == {"AP": 0.7}


def test_format_ap_table_has_one_column_per_statistic_and_dashes_for_missing() -> None:
    table = format_ap_table({"before": {"AP": 0.0}, "after": {key: 0.5 for key in COCO_KEYPOINT_STATS}},
                            title="demo")
    lines = table.splitlines()
    assert lines[0] == "demo" and lines[2] == "| run | " + " | ".join(COCO_KEYPOINT_STATS) + " |"
    assert lines[4].startswith("| before | 0.000 | - |") and lines[5].count("0.500") == 10
