"""Labels from files (streams/ingest/label_files.py, `shadowcanary labels load`)."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from streams.cli.main import cli
from streams.ingest.label_files import BadRow, LabelColumns, label_of, read_labels

CSV = """request_id,is_fraud,chargeback,when,model
r1,1,35.5,2026-12-01T10:00:00Z,fraud
r2,0,,1790000000000,fraud
,1,2,,fraud
r4,maybe,x,,fraud
r5,true,1,yesterday,fraud
r6,1,2,3,fraud,extra
r7,,,,fraud
r8,"[1, 2]",,,
"""


def test_csv_rows_become_labels_and_bad_rows_are_named_by_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV)
    columns = LabelColumns(id="request_id", label="is_fraud", model_column="model", ts_column="when",
                           outcomes={"chargeback": "chargeback"})
    items = list(read_labels(path, columns, now_ms=123))
    good = [i for i in items if not isinstance(i, BadRow)]
    bad = {i.line: i.reason for i in items if isinstance(i, BadRow)}
    assert [(g.request_id, g.label, g.outcomes, int(g.ts.timestamp() * 1000)) for g in good] == [
        ("r1", 1, {"chargeback": 35.5}, 1_796_119_200_000), ("r2", 0, {}, 1_790_000_000_000)]
    assert bad == {4: "column 'request_id' (the request id) is empty",
                   5: "column 'chargeback': 'x' is not a number",
                   6: "column 'when': 'yesterday' is neither epoch milliseconds nor ISO 8601",
                   7: "1 more cells than the header has columns",
                   8: bad[8], 9: "column 'model' (the model) is empty"}
    assert "label or outcomes is required" in bad[8]


@pytest.mark.parametrize("cell, label_type, expected", [
    ("1", "auto", 1), ("1", "string", "1"), ("true", "auto", True), ("fraud", "auto", "fraud"),
    ('"1"', "auto", "1"), ("[1, 2]", "json", [1, 2]), ("2.5", "number", 2.5),
])
def test_csv_cells_become_labels_as_the_label_type_says(cell, label_type, expected):
    columns = LabelColumns(id="id", label="y", model="m", label_type=label_type)
    assert label_of({"id": "r", "y": cell}, columns, 0).label == expected


@pytest.mark.parametrize("cell, label_type", [("fraud", "number"), ("true", "number"), ("{x", "json")])
def test_a_label_that_is_not_of_its_type_is_refused(cell, label_type):
    with pytest.raises(ValueError, match="label"):
        label_of({"id": "r", "y": cell}, LabelColumns(id="id", label="y", model="m", label_type=label_type), 0)


def test_jsonl_rows_keep_their_types(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_bytes(b"\n".join([
        orjson.dumps({"rid": "a", "y": ["i1", "i2"], "rev": 12.5}),
        b"not json",
        orjson.dumps([1, 2]),
        b"",
        orjson.dumps({"rid": 7, "y": 0, "rev": None}),
    ]))
    columns = LabelColumns(id="rid", label="y", model="ranker", outcomes={"revenue": "rev"})
    items = list(read_labels(path, columns, now_ms=5))
    assert [(i.request_id, i.label, i.outcomes) for i in items if not isinstance(i, BadRow)] == [
        ("a", ["i1", "i2"], {"revenue": 12.5}), ("7", 0, {})]
    assert [(i.line, i.reason.split(":")[0]) for i in items if isinstance(i, BadRow)] == [
        (2, "not JSON"), (3, "not a JSON object")]


def test_labels_load_dry_run_counts_and_exits_1_on_skipped_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV)
    result = CliRunner().invoke(cli, ["labels", "load", str(path), "--id-column", "request_id", "--label-column",
                                      "is_fraud", "--model-column", "model", "--outcome", "chargeback=chargeback",
                                      "--ts-column", "when", "--dry-run"])
    assert result.exit_code == 1
    assert "would publish 2 labels, skipped 6 rows" in result.output
    assert "line 5: column 'chargeback': 'x' is not a number" in result.output
    clean = tmp_path / "clean.csv"
    clean.write_text("id,y\nr1,1\nr2,0\n")
    result = CliRunner().invoke(cli, ["labels", "load", str(clean), "--id-column", "id", "--label-column", "y",
                                      "--model", "m", "--dry-run"])
    assert result.exit_code == 0 and "would publish 2 labels, skipped 0 rows" in result.output


@pytest.mark.parametrize("args, message", [
    (["--id-column", "nope", "--label-column", "y", "--model", "m"], "--id-column: no column 'nope'"),
    (["--id-column", "id", "--label-column", "y"], "give --model"),
    (["--id-column", "id", "--model", "m"], "give --label-column, --outcome"),
    (["--id-column", "id", "--model", "m", "--outcome", "revenue"], "give NAME=COLUMN"),
])
def test_labels_load_names_a_bad_argument(tmp_path, args, message):
    path = tmp_path / "labels.csv"
    path.write_text("id,y\nr1,1\n")
    result = CliRunner().invoke(cli, ["labels", "load", str(path), *args, "--dry-run"])
    assert result.exit_code == 2 and message in result.output


def test_labels_load_refuses_an_unknown_format(tmp_path):
    path = tmp_path / "labels.parquet"
    path.write_bytes(b"PAR1")
    result = CliRunner().invoke(cli, ["labels", "load", str(path), "--id-column", "id", "--label-column", "y",
                                      "--model", "m", "--dry-run"])
    assert result.exit_code == 2 and "give a .csv or .jsonl file" in result.output
