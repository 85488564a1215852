"""Checkpoints uploaded to the dashboard: only .safetensors + .json within the size limit, every wrong, damaged,
pickled or mismatched upload refused with the reason while the previous model stays, and a good pair loads exactly."""

from __future__ import annotations

import io
import json

import pytest
import torch
from conftest import assert_renders, errors, open_page
from streamlit.testing.v1 import AppTest

from dashboards import state
from model import MiniGPT
from model.storage.registry import CHECKPOINT_DIR

UPLOAD = "an uploaded file"
pytestmark = pytest.mark.usefixtures("restore_torch_threads")


def shipped(name: str) -> tuple[bytes, bytes]:
    return tuple((CHECKPOINT_DIR / f"{name}{s}").read_bytes() for s in (".safetensors", ".json"))


# ------------------------------------------------------------------------------------------- uploads in a session
def upload(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    at.sidebar.file_uploader(key="checkpoint_upload").set_value([(n, d, "application/octet-stream") for n, d in files])
    return at.run()


@pytest.fixture
def on_induction() -> AppTest:
    """A session showing induction-2l (the 'previous model'), with the upload widget open."""
    at = open_page()
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    return at.sidebar.selectbox(key="checkpoint_choice").set_value(UPLOAD).run()


def test_uploader_takes_only_checkpoint_files_within_the_limit(on_induction):
    """The upload widget accepts .safetensors and .json only, with the same MB limit as the config."""
    uploader = on_induction.sidebar.file_uploader(key="checkpoint_upload")
    assert sorted(uploader.allowed_type) == [".json", ".safetensors"], uploader.allowed_type
    assert uploader.proto.max_upload_size_mb * 2**20 == state.MAX_UPLOAD_BYTES, "widget limit differs from the code's"
    assert on_induction.session_state["selection"].label == "induction-2l", "waiting for an upload lost the model"


def _bad_uploads() -> dict[str, tuple[list[tuple[str, bytes]], str]]:
    weights, meta = shipped("minigpt-text")
    doc = json.loads(meta)
    schema = json.dumps({**doc, "config": {**doc["config"], "act": "swish"}}).encode()
    other_hash = json.dumps({**doc, "weights_sha256": "0" * 64}).encode()
    pickled = io.BytesIO()
    torch.save({"embed.W_E": torch.zeros(64, 64)}, pickled)
    return {
        "pickle-renamed": ([("m.safetensors", pickled.getvalue()), ("m.json", meta)], "PyTorch/pickle"),
        "truncated": ([("m.safetensors", weights[: len(weights) // 2]), ("m.json", meta)], "is damaged"),
        "schema": ([("m.safetensors", weights), ("m.json", schema)], "'config.act' must be one of"),
        "weights-only": ([("m.safetensors", weights)], "also upload the .json"),
        "mismatched": ([("m.safetensors", shipped("induction-2l")[0]), ("m.json", meta)], "does not match its config"),
        "two-saves": ([("m.safetensors", weights), ("m.json", other_hash)], "come from different saves"),
        "two-json": ([("m.safetensors", weights), ("a.json", meta), ("b.json", meta)], "exactly one .safetensors"),
    }


@pytest.mark.parametrize("case", list(_bad_uploads()))
def test_wrong_upload_shows_an_error_and_keeps_the_previous_model(on_induction, case):
    """A wrong or damaged upload: st.error with the reason, the previous model stays, the pages still draw."""
    files, reason = _bad_uploads()[case]
    at = upload(on_induction, files)
    assert not at.exception, f"the upload raised: {at.exception[0].message}"
    assert any(reason in e and "Showing 'induction-2l' instead" in e for e in errors(at)), errors(at)
    assert at.session_state["selection"].label == "induction-2l", "a wrong upload replaced the previous model"
    at.switch_page("views/attention.py").run()
    assert_renders(at, 2)  # one head per block: the "every head" grid is not repeated


def test_oversize_upload_is_refused_in_code(monkeypatch):
    """Beyond MAX_UPLOAD_BYTES the code refuses the upload itself (not only the browser), keeping the model."""
    monkeypatch.setattr(state, "MAX_UPLOAD_BYTES", 2**20)  # before the session starts: the widget's limit follows it
    at = open_page()
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    at.sidebar.selectbox(key="checkpoint_choice").set_value(UPLOAD).run()
    weights, meta = shipped("minigpt-text")
    at = upload(at, [("m.safetensors", weights + weights + weights), ("m.json", meta)])
    assert any("over the 1 MB limit" in e for e in errors(at)), errors(at)
    assert at.session_state["selection"].label == "induction-2l", "an oversize upload replaced the previous model"


def test_good_upload_after_a_bad_one_is_used(on_induction):
    """After a refused upload, a correct pair loads and becomes the model shown."""
    weights, meta = shipped("minigpt-text")
    upload(on_induction, [("m.safetensors", weights[:100]), ("m.json", meta)])
    at = upload(on_induction, [("mine.safetensors", weights), ("mine.json", meta)])
    assert not errors(at) and at.session_state["selection"].label == "mine.safetensors", errors(at)
    assert_renders(at, 2)


def test_pickle_named_files_are_refused_by_the_code_too():
    """Even past the browser's type filter, check_upload refuses pickle files by name, saying why."""
    with pytest.raises(ValueError, match="unpickling can run arbitrary code"):
        state.check_upload([("model.pt", b"\x80\x04"), ("model.json", b"{}")])


def add_upload(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    """Drop more files on the uploader as a browser does: the files uploaded before stay in its list (same ids)."""
    uploader = at.sidebar.file_uploader(key="checkpoint_upload")
    uploader._files = uploader._get_files_to_register()  # what the browser still holds from earlier drops
    for name, data in files:
        uploader.upload(name, data)
    return at.run()


def test_a_new_upload_replaces_the_earlier_files(on_induction):
    """The uploader keeps earlier files in its list; a new pair dropped after a junk file is loaded, not refused."""
    weights, meta = shipped("minigpt-text")
    at = add_upload(on_induction, [("x.safetensors", b"junk")])
    assert any("also upload the .json" in e for e in errors(at)), errors(at)
    at = add_upload(at, [("mine.safetensors", weights), ("mine.json", meta)])
    assert len(at.session_state["checkpoint_upload"]) == 3, "the test must keep the junk file in the list"
    assert not errors(at) and at.session_state["selection"].label == "mine.safetensors", errors(at)
    at.slider(key="pred_temperature").set_value(0.5).run()  # another widget: the same pair stays loaded
    assert not errors(at) and at.session_state["selection"].label == "mine.safetensors", errors(at)


def test_weights_then_their_json_in_two_drops_load(on_induction):
    """Weights dropped alone are asked for their JSON; dropping the JSON next completes the pair."""
    weights, meta = shipped("minigpt-text")
    at = add_upload(on_induction, [("two.safetensors", weights)])
    assert any("also upload the .json" in e for e in errors(at)), errors(at)
    at = add_upload(at, [("two.json", meta)])
    assert not errors(at) and at.session_state["selection"].label == "two.safetensors", errors(at)


# ------------------------------------------------------------------------------------------- check and load
def test_check_upload_rejects_bad_files(monkeypatch):
    """Uploads: wrong type, two weight files, oversize, a broken header and bad JSON are refused with a reason."""
    header = b'{"__metadata__":{}}'
    good = len(header).to_bytes(8, "little") + header
    cases = [
        ([("model.pt", b"x")], "exactly one .safetensors"),
        ([("a.safetensors", good), ("b.safetensors", good)], "exactly one .safetensors"),
        ([("a.safetensors", good)], "also upload the .json written beside a.safetensors"),
        ([("a.safetensors", b"\x00" * 4), ("a.json", b"{}")], "not a safetensors file"),
        ([("a.safetensors", (10**6).to_bytes(8, "little") + b"{"), ("a.json", b"{}")], "not a safetensors file"),
        ([("a.safetensors", good), ("a.json", b"{not json")], "not valid JSON"),
    ]
    for files, reason in cases:
        with pytest.raises(ValueError, match=reason):
            state.check_upload(files)
    monkeypatch.setattr(state, "MAX_UPLOAD_BYTES", 16)
    with pytest.raises(ValueError, match="over the 0 MB limit"):
        state.check_upload([("a.safetensors", good)])


def test_uploaded_checkpoint_loads_the_same_weights():
    """Uploading minigpt-text's two files gives a model with exactly the shipped weights."""
    files = [
        (f"minigpt-text{s}", (CHECKPOINT_DIR / f"minigpt-text{s}").read_bytes()) for s in (".safetensors", ".json")
    ]
    model = state.load_upload(state.check_upload(files), tuple(files))
    shipped = MiniGPT.from_pretrained("minigpt-text")
    for (name, a), (_, b) in zip(model.state_dict().items(), shipped.state_dict().items(), strict=True):
        assert torch.equal(a, b), f"{name} differs after the upload round trip"
