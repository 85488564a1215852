"""The sidebar: checkpoint picker, prompt box and the prompt's clickable token chips.

It runs on every rerun before the page, and leaves a :class:`~dashboards.state.Selection` in
``st.session_state["selection"]`` and the selected token position (:func:`~dashboards.state.selected_position`)
settled for this prompt; clicking a chip selects that position on every page. A checkpoint that fails to load (a
missing path, a damaged or wrong upload) shows ``st.error`` and keeps the model this session showed before (the
default one at first), so every page keeps working.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboards import plots, state
from model.network.minigpt import MiniGPT
from model.network.tokenizer import Tokenizer
from model.storage.registry import CHECKPOINT_DIR, SHIPPED, shipped_names

SOURCE_PATH = "a .safetensors path"
SOURCE_UPLOAD = "an uploaded file"


Loaded = tuple[MiniGPT, str, str]  # model, model_id (cache key), label
LAST_LOADED = "last_loaded_checkpoint"  # session key: the last model that loaded (kept when a new choice fails)
UPLOAD_SEEN, UPLOAD_USED = "upload_seen_ids", "upload_used_ids"  # session keys: file ids seen, and those last used


def _latest_upload() -> list:
    """The files of the latest drop: the uploader keeps earlier files in its list, but a new drop replaces them.

    Files not seen on the previous run are the new drop; a drop that lacks the weights or the JSON is completed by
    the latest earlier file of that kind (weights first, then their JSON, is a pair). With no new file (another
    widget reran the page), the files used last time (those still in the list).
    """
    files = list(st.session_state.get("checkpoint_upload") or [])
    seen, used = st.session_state.get(UPLOAD_SEEN, set()), st.session_state.get(UPLOAD_USED, set())
    fresh = [u for u in files if u.file_id not in seen]
    chosen = fresh or [u for u in files if u.file_id in used] or files
    for suffix in (".safetensors", ".json") if fresh else ():
        if not any(u.name.lower().endswith(suffix) for u in fresh):
            chosen = [u for u in files if u not in fresh and u.name.lower().endswith(suffix)][-1:] + chosen
    st.session_state[UPLOAD_SEEN] = {u.file_id for u in files}
    st.session_state[UPLOAD_USED] = {u.file_id for u in chosen}
    return chosen


def _fallback() -> tuple[Loaded, str | None]:
    """The shipped default (or the random model when none is shipped or it cannot be read), and why not."""
    names = shipped_names()
    if not names:
        return (state.random_model(0), "random:0", state.RANDOM_LABEL), None
    try:
        stamp = state.file_stamp(CHECKPOINT_DIR / f"{names[0]}.safetensors")
        return (state.load_checkpoint(names[0], stamp), f"shipped:{names[0]}:{stamp}", names[0]), None
    except Exception as err:  # a damaged shipped file: say so, and still show something
        return (state.random_model(0), "random:0", state.RANDOM_LABEL), f"Could not load {names[0]!r}: {err}."


def _previous() -> tuple[Loaded, str | None]:
    """The model this session showed last (a failed or pending choice keeps it), else the default."""
    if LAST_LOADED in st.session_state:
        return st.session_state[LAST_LOADED], None
    return _fallback()


def _load_choice(choice: str) -> Loaded | None:
    """Load what the picker names (None while a path or upload is still to be given); errors carry a reason."""
    if choice == state.RANDOM_LABEL:
        return state.random_model(0), "random:0", choice
    if choice == SOURCE_PATH:
        raw = st.session_state.get("checkpoint_path", "").strip()
        if not raw:
            return None
        path = Path(raw).expanduser()
        if path.is_dir():  # a Hugging Face model folder: config.json, safetensors weights, tokenizer.json
            stamp = "|".join(
                state.file_stamp(p) for p in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors"))
            )
            return state.load_checkpoint(str(path.resolve()), stamp), f"path:{path.resolve()}:{stamp}", path.name
        if path.suffix != ".safetensors":
            raise ValueError(
                f"{raw!r} does not end in .safetensors; give the weights file (not its .json) or a Hugging Face "
                "model folder"
            )
        if not path.is_file():
            raise FileNotFoundError(f"no file at {str(path)!r}; check the path (it is read on the server)")
        stamp = state.file_stamp(path)
        return state.load_checkpoint(str(path.resolve()), stamp), f"path:{path.resolve()}:{stamp}", path.name
    if choice == SOURCE_UPLOAD:
        files = [(u.name, u.getvalue()) for u in _latest_upload()]
        if not files:
            return None
        digest = state.check_upload(files)
        name = next(n for n, _ in files if n.lower().endswith(".safetensors"))
        return state.load_upload(digest, tuple(files)), f"upload:{digest}", name
    stamp = state.file_stamp(CHECKPOINT_DIR / f"{choice}.safetensors")
    return state.load_checkpoint(choice, stamp), f"shipped:{choice}:{stamp}", choice


def _checkpoint_picker() -> tuple[Loaded, str | None]:
    """The picker's widgets and the model they name, or the default plus the reason it is shown instead."""
    options = [*shipped_names(), state.RANDOM_LABEL, SOURCE_PATH, SOURCE_UPLOAD]
    about = "; ".join(f"{name}: {text}" for name, text in SHIPPED.items())
    choice = st.selectbox("Checkpoint", options, key="checkpoint_choice", help=f"Shipped checkpoints: {about}.")
    if choice == SOURCE_PATH:
        st.text_input(
            "Path to a .safetensors file, or a Hugging Face model folder",
            key="checkpoint_path",
            placeholder="runs/my-model.safetensors or ~/models/gpt2",
        )
    try:
        if choice == SOURCE_UPLOAD:
            limit = state.MAX_UPLOAD_BYTES // 2**20
            st.file_uploader(
                f"Upload a .safetensors file and its .json (at most {limit} MB)",
                type=["safetensors", "json"],
                accept_multiple_files=True,
                max_upload_size=limit,
                key="checkpoint_upload",
            )
        loaded = _load_choice(choice)
    except Exception as err:  # the UI boundary: any failure to load becomes a message, never a traceback
        loaded, reason = _previous()
        because = f" {reason}" if reason else ""
        return loaded, f"Could not load {choice!r}: {err}.{because} Showing {loaded[2]!r} instead."
    if loaded is None:
        loaded, reason = _previous()
        st.info(f"Give a checkpoint above; until then this shows {loaded[2]!r}.")
        return loaded, reason
    st.session_state[LAST_LOADED] = loaded
    return loaded, None


def render() -> state.Selection:
    """Draw the sidebar, store the selection in ``st.session_state["selection"]`` and settle the selected position."""
    with st.sidebar:
        st.header("MiniGPT Lens")
        (model, model_id, label), load_error = _checkpoint_picker()
        if load_error:
            st.error(load_error)
        st.caption(f"Model: **{label}** · {model.cfg.n_params:,} parameters · context {model.cfg.n_ctx}")
        show = state.showcase(label, model)
        if st.session_state.get("prompt") in (None, st.session_state.get(state.PROMPT_SHOWN)):
            st.session_state["prompt"] = show.prompt  # a new model's own prompt, unless the user typed one
        st.session_state[state.PROMPT_SHOWN] = show.prompt
        unit = "characters" if isinstance(model.tokenizer, Tokenizer) else "tokens"
        prompt = st.text_area(f"Prompt (at most {model.cfg.n_ctx - 1} {unit})", key="prompt", height=80)
        if prompt == show.prompt:
            st.caption(f"This model's default prompt: {show.why}.")
        replace = st.checkbox(
            "Replace unknown characters with <unk>", key="prompt_replace_unknown",
            help="Off: a character outside the 64 symbols is an error naming it. On: it is read as <unk>.",
        )  # fmt: skip
        try:
            token_ids, prompt_error = state.check_prompt(model, prompt, replace_unknown=replace), None
        except ValueError as err:
            token_ids, prompt_error = None, str(err)
        if prompt_error:
            st.error(f"{prompt_error}.")
        else:
            for note in state.prompt_notes(prompt):
                st.warning(note)
    position = show.position if prompt == show.prompt else None
    sel = state.Selection(state.ModelRef(model, model_id), label, prompt, token_ids, prompt_error, load_error, position)
    if token_ids is not None:
        state.settle_position(model_id, len(token_ids), position)
        chips = plots.token_chip_labels(model.to_str_tokens(list(token_ids)))
        state.pick_token(st.sidebar, "Tokens: click one to select it on every page", chips, key="token_chips")
    st.session_state["selection"] = sel
    return sel
