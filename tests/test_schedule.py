"""Retention schedules against the thesis' numbers and the retain.txt format (DESIGN §3)."""
from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from explorer_core.errors import ExplorerError
from explorer_core.schedule import (ScheduleConfig, read_retain, retention_table,
                                    widths_from_spec, write_retain)


def reference_geometric(widths, q, iterations):
    """Independent re-statement of the thesis rule with Decimal half-to-even rounding."""
    rows = []
    for t in range(iterations):
        row = tuple(max(1, int(Decimal(repr(h * q ** t)).to_integral_value(ROUND_HALF_EVEN)))
                    for h in widths)
        if rows and rows[-1] == row:
            continue
        rows.append(row)
        if set(row) == {1}:
            break
    return rows


def test_thesis_iterations_7_and_8():
    table = retention_table(ScheduleConfig((256, 64), 0.8, 31, "geometric"))
    assert table.widths[7] == (54, 13)
    assert table.percent(table.widths[7]) == pytest.approx(20.9375)
    assert table.widths[8] == (43, 11)
    assert table.percent(table.widths[8]) == pytest.approx(16.875)
    assert table.widths[0] == (256, 64)
    assert table.percent(table.widths[0]) == 100


@pytest.mark.parametrize("widths,q", [((256, 64), 0.8), ((300, 100, 10), 0.7), ((1000,), 0.9)])
def test_geometric_matches_reference(widths, q):
    assert retention_table(ScheduleConfig(widths, q, 200)).widths == \
        reference_geometric(widths, q, 200)


def test_duplicate_rows_are_skipped_and_iterations_renumbered():
    # 3 * 0.9**t: 3, 2.7→3 (dup), 2.43→2, 2.19→2 (dup) … 1.43→1
    table = retention_table(ScheduleConfig((3,), 0.9, 50))
    assert table.widths == [(3,), (2,), (1,)]
    assert [r[0] for r in table.rows()] == [0, 1, 2]


def test_table_ends_at_first_all_ones_row():
    table = retention_table(ScheduleConfig((256, 64), 0.8, 1000))
    assert table.widths[-1] == (1, 1)
    assert all(row != (1, 1) for row in table.widths[:-1])
    # a smaller layer that reaches 1 early keeps the table going until all layers do
    assert table.widths[-2][1] == 1 and table.widths[-2][0] > 1
    # more iterations than needed change nothing
    assert retention_table(ScheduleConfig((256, 64), 0.8, 31)).widths == table.widths


def test_iterations_cap_the_table():
    table = retention_table(ScheduleConfig((256, 64), 0.8, 8))
    assert len(table) == 8
    assert table.widths[-1] == (54, 13)


def test_rounding_is_half_to_even():
    # 10 * 0.5**2 = 2.5 → 2 and 18 * 0.25 = 4.5 → 4 (half-up would give 3 and 5)
    assert retention_table(ScheduleConfig((10,), 0.5, 10)).widths == [(10,), (5,), (2,), (1,)]
    assert retention_table(ScheduleConfig((18,), 0.25, 10)).widths == [(18,), (4,), (1,)]


def test_linear_literal_values():
    # keep fraction 1, 3/4, 1/2, 1/4, 0 over five iterations
    table = retention_table(ScheduleConfig((256, 64), 0.8, 5, "linear"))
    assert table.widths == [(256, 64), (192, 48), (128, 32), (64, 16), (1, 1)]


def test_cubic_literal_values():
    # keep fraction (1 - t/4)**3: 1, 0.421875, 0.125, 0.015625, 0
    table = retention_table(ScheduleConfig((256, 64), 0.8, 5, "cubic"))
    assert table.widths == [(256, 64), (108, 27), (32, 8), (4, 1), (1, 1)]


@pytest.mark.parametrize("kind", ["linear", "cubic"])
@pytest.mark.parametrize("iterations", [2, 7, 31, 300])
def test_ramps_are_monotone_and_reach_one(kind, iterations):
    table = retention_table(ScheduleConfig((256, 64, 7), 0.8, iterations, kind))
    assert table.widths[0] == (256, 64, 7)
    assert table.widths[-1] == (1, 1, 1)
    assert len(table) <= iterations
    for prev, cur in zip(table.widths, table.widths[1:]):
        assert all(c <= p for c, p in zip(cur, prev))
        assert sum(cur) < sum(prev)


def test_cubic_prunes_faster_than_linear_early():
    lin = retention_table(ScheduleConfig((1000,), 0.8, 11, "linear")).widths
    cub = retention_table(ScheduleConfig((1000,), 0.8, 11, "cubic")).widths
    assert cub[1][0] < lin[1][0]


@pytest.mark.parametrize("q", [0, 1, -0.2, 1.5, math.nan])
def test_q_outside_open_unit_interval_is_refused(q):
    with pytest.raises(ExplorerError, match="q must lie strictly between 0 and 1"):
        ScheduleConfig((256, 64), q, 31).validate()


@pytest.mark.parametrize("widths", [(0,), (256, 0), (-3,), (2.5,), (), (1_000_000,),
                                    (10**20,)])
def test_bad_widths_are_refused(widths):
    with pytest.raises(ExplorerError, match="width"):
        ScheduleConfig(widths, 0.8, 31).validate()


@pytest.mark.parametrize("iterations", [0, -1, 2.0, 10_001])
def test_bad_iterations_are_refused(iterations):
    with pytest.raises(ExplorerError, match="iterations"):
        ScheduleConfig((256, 64), 0.8, iterations).validate()


def test_the_widest_and_longest_schedules_round_trip_through_retain_txt(tmp_path):
    """The bounds are where retain.txt's six significant digits stop holding a width."""
    table = retention_table(ScheduleConfig((999_999, 3), 0.999, 10_000))
    back = read_retain(write_retain(tmp_path / "retain.txt", table))
    assert back.dense == (999_999, 3) and back.widths == table.widths
    assert len(table.widths) > 1000


def test_unknown_kind_is_refused():
    with pytest.raises(ExplorerError, match="geometric"):
        ScheduleConfig((256, 64), 0.8, 31, "exponential").validate()


def test_error_messages_are_one_line():
    for cfg in [ScheduleConfig((0,), 0.8, 31), ScheduleConfig((5,), 2.0, 31),
                ScheduleConfig((5,), 0.5, 0)]:
        with pytest.raises(ExplorerError) as info:
            cfg.validate()
        assert "\n" not in str(info.value)


def test_retain_txt_exact_format(tmp_path):
    path = write_retain(tmp_path / "retain.txt",
                        retention_table(ScheduleConfig((256, 64), 0.8, 9)))
    lines = path.read_text().splitlines()
    assert lines[0] == "Iteration h1NodesRetained h2NodesRetained perNodesRetained"
    assert lines[1] == "0 256 64 100"
    assert lines[8] == "7 54 13 20.9375"
    assert lines[9] == "8 43 11 16.875"
    assert len(lines) == 10


def test_retain_txt_header_has_one_column_per_layer(tmp_path):
    path = write_retain(tmp_path / "retain.txt",
                        retention_table(ScheduleConfig((30, 20, 10), 0.5, 3)))
    assert path.read_text().splitlines()[0] == \
        "Iteration h1NodesRetained h2NodesRetained h3NodesRetained perNodesRetained"


def test_retain_txt_round_trip(tmp_path):
    table = retention_table(ScheduleConfig((300, 100, 10), 0.7, 31, "geometric"))
    back = read_retain(write_retain(tmp_path / "retain.txt", table))
    assert back.dense == (300, 100, 10)
    assert back.widths == table.widths
    assert back.to_text() == table.to_text()


def test_write_retain_leaves_no_temp_files(tmp_path):
    write_retain(tmp_path / "retain.txt", retention_table(ScheduleConfig()))
    assert [p.name for p in tmp_path.iterdir()] == ["retain.txt"]


def test_read_retain_refuses_other_tables(tmp_path):
    other = tmp_path / "train_results.txt"
    other.write_text("TrainLoss TrainAccuracy\n0.5 0.9\n")
    with pytest.raises(ExplorerError, match="not a retain.txt"):
        read_retain(other)


# ------------------------------------------------------------ widths from a spec JSON

def test_widths_from_mlp_spec_and_checkpoint_sidecar():
    spec = {"arch": "mlp", "in": 784, "hidden": [256, 64], "out": 10}
    assert widths_from_spec(spec) == (256, 64)
    assert widths_from_spec({"spec": {**spec, "hidden": [54, 13]}, "metrics": {}}) == (54, 13)


def test_widths_from_conv_specs_list_channels_then_hidden():
    assert widths_from_spec({"arch": "cnn", "in_ch": 1, "out": 10, "channels": [16, 32],
                             "hidden": [128]}) == (16, 32, 128)
    pruned = {"arch": "resnet18", "in_ch": 3, "out": 10,
              "widths": {"conv1": 40, "layer1.0.conv1": 30}}
    assert widths_from_spec(pruned) == (40, 30)


@pytest.mark.parametrize("info,match", [
    ({"arch": "slp", "in": 784, "out": 10}, "no prunable layer widths"),
    ({"hidden": [256, 64]}, "'arch'"),
    ([256, 64], "'arch'"),
    ({"arch": "mlp", "hidden": [256, "x"]}, "whole numbers"),
    ({"arch": "mlp", "hidden": [0]}, "whole numbers"),
])
def test_widths_from_spec_refuses_what_it_cannot_use(info, match):
    with pytest.raises(ExplorerError, match=match):
        widths_from_spec(info)


@pytest.mark.parametrize("text, message", [
    ("Iteration h1NodesRetained perNodesRetained\n0 12.7 100\n", "12.7 is not a whole number"),
    ("Iteration h1NodesRetained perNodesRetained\n0 0 100\n", "from 1 to 999,999, got 0"),
    ("Iteration h1NodesRetained perNodesRetained\n0 1.23457e+06 100\n", "got 1234570"),
    ("Iteration h1NodesRetained perNodesRetained\n0 8 100\n1 9 112.5\n", "cannot grow back"),
    ("Iteration h1NodesRetained h2NodesRetained perNodesRetained\n0 8 4 100\n1 4 2\n",
     "every row needs 4 values"),
    ("Iteration perNodesRetained\n0 100\n", "is not a retain.txt table"),
    ("Iteration h1NodesRetained perNodesRetained\n", "is not a retain.txt table"),
    ("Iteration h1NodesRetained perNodesRetained\n0 eight 100\n",
     "hand.txt is not a retain.txt table (line 2 holds 'eight', not a number)"),
    ("Iteration h1NodesRetained perNodesRetained\n0 8 100\n\n1 4 50 foo\n",
     "(line 4 holds 'foo', not a number)"),  # the line as an editor numbers it
    ("Iteration h1NodesRetained perNodesRetained\n0 8 100\n1 4 50\n1 2 25\n",
     "hand.txt, row 3: iteration 1 repeats row 2's; each row is one iteration: renumber or "
     "remove it"),
    # read by position, these swapped two layers' widths / took h3 as the second layer
    ("Iteration h2NodesRetained h1NodesRetained perNodesRetained\n0 8 16 100\n",
     "hand.txt: its layer columns must be h1NodesRetained h2NodesRetained, in that order "
     "(the first hidden layer's first), got h2NodesRetained h1NodesRetained"),
    ("Iteration h1NodesRetained h3NodesRetained perNodesRetained\n0 16 8 100\n",
     "got h1NodesRetained h3NodesRetained"),
    # DESIGN §3's rules: run as they stood, these pruned nothing for an iteration each
    ("Iteration h1NodesRetained h2NodesRetained perNodesRetained\n0 20 10 100\n"
     "1 20 10 100\n2 10 5 50\n",
     "hand.txt, row 2: 20 10 repeats row 1's widths, so that iteration would prune nothing; "
     "a retain.txt skips such rows: remove it"),
    ("Iteration h1NodesRetained h2NodesRetained perNodesRetained\n0 2 2 100\n1 1 1 50\n"
     "2 1 1 50\n",
     "hand.txt, row 3: 1 1 repeats row 2's widths, so that iteration would prune nothing; "
     "a retain.txt skips such rows (the table ends at its first row of 1 neuron per layer)"),
])
def test_a_retain_txt_the_loop_could_not_follow_is_refused(text, message):
    """read_retain truncated 12.7 to 12 and took widths of 0, growing widths and %g-rounded
    numbers; a table is now read only as a schedule the loop can follow."""
    from explorer_core.schedule import parse_retain

    with pytest.raises(ExplorerError, match=re.escape(message)):
        parse_retain(text, "hand.txt")


def test_what_write_retain_writes_reads_back_as_the_same_schedule(tmp_path):
    from explorer_core.schedule import read_retain

    table = retention_table(ScheduleConfig((300, 100, 20), 0.7, 40, "cubic"))
    path = write_retain(tmp_path / "retain.txt", table)
    assert read_retain(path).widths == table.widths and read_retain(path).dense == table.dense


@pytest.mark.parametrize("kind", ["linear", "cubic"])
@pytest.mark.parametrize("q", [5.0, 0.0, -1.0, math.nan])
def test_a_ramp_ignores_q_so_any_q_is_accepted(kind, q):
    """The ramps never read q ('q is not used'); a q left at 5 refused them."""
    table = retention_table(ScheduleConfig((256, 64), q, 9, kind))
    assert table.widths == retention_table(ScheduleConfig((256, 64), 0.8, 9, kind)).widths


def test_each_row_records_the_schedule_step_it_was_computed_at():
    """retain.txt numbers the iterations run (duplicates skipped); `steps` keeps the t of
    the formula, so both can be shown: 256·0.8^t gives 2 at t = 22 and 23 (skipped)."""
    q = 0.8
    table = retention_table(ScheduleConfig((256, 64), q, 31))
    assert len(table.steps) == len(table.widths)
    for t, row in zip(table.steps, table.widths):
        assert row == tuple(max(1, round(h * q ** t)) for h in (256, 64))
    assert table.steps[:8] == list(range(8))  # no skip while every step prunes
    skipped = sorted(set(range(table.steps[-1] + 1)) - set(table.steps))
    assert skipped and all(
        tuple(max(1, round(h * q ** t)) for h in (256, 64)) ==
        tuple(max(1, round(h * q ** (t - 1))) for h in (256, 64)) for t in skipped)
    assert [r[0] for r in table.rows()] == list(range(len(table)))  # retain.txt unchanged


def test_a_gap_in_the_iteration_numbers_is_still_read_row_by_row():
    """Only a repeated number is refused: a row deleted by hand leaves a gap, and the
    rows are run in order as before."""
    from explorer_core.schedule import parse_retain

    table = parse_retain("Iteration h1NodesRetained perNodesRetained\n0 8 100\n2 4 50\n")
    assert table.widths == [(8,), (4,)]


@pytest.mark.parametrize("config, text", [
    (ScheduleConfig(), "geometric, widths 256, 64, q = 0.8, 31 iterations"),
    (ScheduleConfig((999_999,), 0.5, 10_000, "cubic"), "cubic, widths 999999, 10,000 iterations"),
    (ScheduleConfig((3, 2, 1), 0.25, 1), "geometric, widths 3, 2, 1, q = 0.25, 1 iteration"),
])
def test_describe_names_the_schedule_in_one_line(config, text):
    assert config.describe() == text


def test_drawn_rows_keeps_small_tables_whole_and_thins_large_ones_evenly():
    from explorer_core.schedule import CHART_ROWS, drawn_rows

    assert drawn_rows(31) == list(range(31))
    assert drawn_rows(CHART_ROWS) == list(range(CHART_ROWS))
    rows = drawn_rows(10_000)
    assert len(rows) == CHART_ROWS and rows == sorted(set(rows))
    assert rows[0] == 0 and rows[-1] == 9_999  # the dense model and the schedule's end
    gaps = {b - a for a, b in zip(rows, rows[1:])}
    assert gaps <= {20, 21}  # evenly spaced
    assert drawn_rows(7, limit=3) == [0, 3, 6]


def test_a_missing_retain_file_is_named_once_with_its_reason(tmp_path):
    """'[Errno 2] No such file or directory: …' repeated the path after 'cannot read'."""
    from explorer_core.errors import ExplorerError

    missing = tmp_path / "retain.txt"
    with pytest.raises(ExplorerError) as info:
        read_retain(missing)
    assert str(info.value) == f"cannot read retention table {missing}: No such file or directory"


def test_a_binary_retain_file_is_said_to_be_no_text(tmp_path):
    """The CLI printed Python's "'utf-8' codec can't decode byte 0xd0 in position 24:
    invalid continuation byte"; the page said "is not a text file"."""
    from explorer_core.errors import ExplorerError

    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"Iteration h1NodesRetained\n\xd0\x80\xff\xfe")
    with pytest.raises(ExplorerError) as info:
        read_retain(binary)
    assert str(info.value) == (f"cannot read retention table {binary}: it is not a text file "
                               f"(no UTF-8 text)")


def test_comment_lines_above_a_retain_header_are_skipped():
    """'# my table' above the header made the header a row: "line 2 holds 'Iteration',
    not a number". numpy's own '# '-prefixed header is still the header."""
    from explorer_core.schedule import parse_retain

    rows = "0 16 8 100\n1 12 8 83.3333\n"
    header = "Iteration h1NodesRetained h2NodesRetained perNodesRetained\n"
    for text in ("# my table\n# made by hand\n" + header + rows, "# " + header + rows,
                 "# my table\n# " + header + rows):
        assert parse_retain(text).widths == [(16, 8), (12, 8)], text
