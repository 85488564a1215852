"""CSV export: schema validation, exact round trip, atomic replacement, clear errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest

from interp import contributions_to_csv, direct_logit_attribution, read_contributions_csv, write_csv_atomic
from interp.common.export import REQUIRED_COLUMNS, SCHEMA


@pytest.fixture
def frame(tiny_model, tokens):
    return direct_logit_attribution(tiny_model, tokens, contrast=5, per="neuron")


def test_round_trip_is_exact(frame, tiny_model, tokens, tmp_path):
    """Writing then reading gives back the same frame: columns, dtypes and float64 values bit for bit (<NA> too)."""
    path = contributions_to_csv(frame, tmp_path / "dla.csv")
    back = read_contributions_csv(path)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    no_contrast = direct_logit_attribution(tiny_model, tokens, per="head")
    back = read_contributions_csv(contributions_to_csv(no_contrast, tmp_path / "plain.csv"))
    pd.testing.assert_frame_equal(back, no_contrast, check_exact=True)
    assert back.contrast.isna().all() and back.neuron.isna().all(), "not applicable must read back as <NA>"


def test_schema_columns_come_first_and_extras_are_kept(frame, tmp_path):
    """Schema columns are written in schema order, unknown columns after them."""
    shuffled = frame[list(reversed(frame.columns))].assign(note="x")
    contributions_to_csv(shuffled, tmp_path / "out.csv")
    header = (tmp_path / "out.csv").read_text().splitlines()[0].split(",")
    assert header == [c for c in SCHEMA if c in frame.columns] + ["note"], "column order must follow SCHEMA"


def test_missing_required_columns_raise(frame, tmp_path):
    """A frame without a required column -> ValueError naming it; nothing is written."""
    with pytest.raises(ValueError, match="'contribution'"):
        contributions_to_csv(frame.drop(columns=["contribution"]), tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(TypeError, match="DataFrame"):
        contributions_to_csv(frame.to_dict(), tmp_path / "x.csv")
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)


def test_missing_directory_raises_file_not_found(frame, tmp_path):
    """Writing into a directory that does not exist -> FileNotFoundError naming the directory."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        contributions_to_csv(frame, tmp_path / "nope" / "dla.csv")
    with pytest.raises(FileNotFoundError, match="no contributions CSV"):
        read_contributions_csv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="is a directory"):
        contributions_to_csv(frame, tmp_path)


def test_failure_mid_write_leaves_old_file_intact(frame, tmp_path, monkeypatch):
    """If writing fails halfway, the previous file is untouched and no temporary file is left behind."""
    path = tmp_path / "dla.csv"
    contributions_to_csv(frame.head(3), path)
    before = path.read_bytes()
    real_to_csv = pd.DataFrame.to_csv

    def fail_halfway(self, handle, **kwargs):
        real_to_csv(self.head(len(self) // 2), handle, **kwargs)  # half the rows reach the disk
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        contributions_to_csv(frame, path)
    assert path.read_bytes() == before, "a failed write must not touch the existing file (write to temp + replace)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dla.csv"], "temporary file left behind"


def test_write_csv_atomic_any_frame(tmp_path):
    """The generic atomic writer writes any frame and replaces an existing file."""
    path = tmp_path / "scores.csv"
    write_csv_atomic(pd.DataFrame({"a": [1]}), path)
    write_csv_atomic(pd.DataFrame({"a": [2, 3]}), path)
    assert pd.read_csv(path).a.tolist() == [2, 3], "second write must replace the first"


def test_read_rejects_a_csv_without_the_schema(tmp_path):
    """Reading a CSV that lacks required columns -> ValueError."""
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="required columns"):
        read_contributions_csv(path)


def test_dashboard_csv_has_token_strings_and_missing_values():
    """The DLA page's download: token strings beside the ids, empty fields (<NA>) where a column does not apply."""
    from dashboards import analyses, state
    from model import MiniGPT

    model = MiniGPT.from_pretrained("minigpt-text")
    ids = tuple(model.to_tokens("the cat")[0].tolist())
    path = Path(tempfile.mkdtemp()) / "dla.csv"
    path.write_bytes(analyses.residual.dla_csv(state.ModelRef(model, "minigpt-text"), ids, None, None, "neuron"))
    frame = read_contributions_csv(path)
    assert {"pos_str", "target_str", "contrast_str"} <= set(frame.columns), list(frame.columns)
    assert frame["target_str"].tolist() == [model.to_str_tokens([t])[0] for t in frame["target"]]
    assert frame["contrast"].isna().all() and not (frame[["layer", "head", "neuron"]] == -1).any().any()
    assert frame.loc[frame["component_type"] == "neuron", "head"].isna().all(), "a neuron row has no head"
