"""What the dashboard is looking at: the model (loaded once per process, handed to the pages as a :class:`ModelRef`),
the checked prompt and the selected position, and the widgets every page shares.

Models are cached with ``st.cache_resource``: one shared, read-only instance per checkpoint, safe
across sessions because hooks live in a per-call context, never on the modules. Every check here
turns bad input into a plain sentence (what was wrong, what to do) for ``st.error``.

Example:
    >>> model = random_model(0)
    >>> check_prompt(model, "hi")
    (0, 22, 23)
    >>> check_prompt(model, "")
    Traceback (most recent call last):
    ...
    ValueError: the prompt is empty; give at least one character
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from dashboards.prompts import (  # noqa: F401 (the sidebar and the pages reach them here)
    DEFAULT_PROMPT,
    INDUCTION_SHOWCASE,
    SHOWCASES,
    Showcase,
    corrupt_at,
    default_corruption,
    repeated_segment,
    showcase,
)
from model.network.config import ModelConfig
from model.network.minigpt import MiniGPT
from model.network.token_ids import prompt_ids
from model.storage.checkpoint import check_checkpoint_bytes

RANDOM_LABEL = "untrained (random weights, seed 0)"
PROMPT_SHOWN = "prompt_showcase_shown"  # session key: the default prompt the sidebar last put in the box
MAX_UPLOAD_BYTES = 64 * 2**20  # = server.maxUploadSize (MB) in .streamlit/config.toml; the locked config is ~0.4 MB
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class ModelRef:
    """A loaded model and its id, the one model argument of every cached analysis (``dashboards.analyses``).

    ``id`` is a key that changes whenever the weights do (``shipped:<name>:<file stamp>``, ``random:0``, ...). A
    reference hashes and compares by its id alone, and Streamlit's caches hash it by its id (the analyses give
    ``ModelRef`` to ``st.cache_data(hash_funcs=...)``): a rerun with the same model costs a lookup, never a hash of
    the weights.

    Example:
        >>> ModelRef(random_model(0), "random:0") == ModelRef(random_model(0), "random:0")
        True
    """

    model: MiniGPT
    id: str

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelRef) and other.id == self.id


@dataclass(frozen=True)
class Selection:
    """The sidebar's choice, read by every page (``st.session_state["selection"]``)."""

    ref: ModelRef  # the model and its id: what every cached analysis takes
    label: str  # what the sidebar shows as the model's name
    prompt: str
    token_ids: tuple[int, ...] | None  # <bos> + prompt, or None when the prompt is bad
    prompt_error: str | None  # why the prompt cannot be run, with what to do
    load_error: str | None = None  # why the chosen checkpoint could not be loaded (we fell back)
    position: int | None = None  # where the position pickers start (the showcase's), None: the last position

    @property
    def model(self) -> MiniGPT:
        return self.ref.model

    @property
    def model_id(self) -> str:
        return self.ref.id


def file_stamp(path: Path) -> str:
    """Size and modification time, so an edited checkpoint file is loaded again."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


@st.cache_resource(max_entries=8, show_spinner="Loading the checkpoint ...")
def load_checkpoint(name_or_path: str, stamp: str) -> MiniGPT:
    """``MiniGPT.from_pretrained(name_or_path)`` in eval mode, once per (file, stamp).

    Every model here is frozen (``requires_grad_(False)``): the sessions' threads share it, and a frozen
    parameter takes no autograd lock, so no thread's graph (attribution patching) can stall another
    (see tests/model/test_concurrency.py).
    """
    del stamp  # part of the cache key only
    return MiniGPT.from_pretrained(name_or_path).eval().requires_grad_(False)


@st.cache_resource(max_entries=2, show_spinner=False)
def random_model(seed: int) -> MiniGPT:
    """The locked config with random weights: what the trained model looked like before training."""
    return MiniGPT(ModelConfig(), seed=seed).eval().requires_grad_(False)


@st.cache_resource(max_entries=4, show_spinner="Loading the uploaded checkpoint ...")
def load_upload(digest: str, _files: tuple[tuple[str, bytes], ...]) -> MiniGPT:
    """Load uploaded ``(name, bytes)`` files (one ``.safetensors``, its ``.json``) through a temporary folder."""
    del digest  # the cache key; _files is not hashed by Streamlit
    weights = next(data for name, data in _files if name.endswith(".safetensors"))
    with tempfile.TemporaryDirectory(prefix="minigpt-upload-") as tmp:
        path = Path(tmp) / "uploaded.safetensors"
        path.write_bytes(weights)
        for name, data in _files:
            if name.endswith(".json"):
                path.with_suffix(".json").write_bytes(data)
        return MiniGPT.from_pretrained(str(path)).eval().requires_grad_(False)


def check_upload(files: list[tuple[str, bytes]]) -> str:
    """Check uploaded files before loading them; returns their digest, raises ValueError saying what to fix.

    Accepted: exactly one ``.safetensors`` file and the ``.json`` written beside it, together at most
    :data:`MAX_UPLOAD_BYTES` (the same limit as ``server.maxUploadSize`` in ``.streamlit/config.toml``,
    which the browser enforces first). The weights' header, the JSON schema, the tensor layout and the
    weights' hash are all checked here, before anything is written to disk or loaded.
    """
    names = [n for n, _ in files]
    weights = [(n, d) for n, d in files if n.lower().endswith(".safetensors")]
    metas = [(n, d) for n, d in files if n.lower().endswith(".json")]
    if len(weights) != 1 or len(metas) > 1 or len(weights) + len(metas) != len(files):
        raise ValueError(
            "upload exactly one .safetensors file and the .json written beside it (pickle files such as .pt are "
            f"refused: unpickling can run arbitrary code); got {names}"
        )
    total = sum(len(d) for _, d in files)
    if total > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"the upload is {total / 2**20:.1f} MB, over the {MAX_UPLOAD_BYTES // 2**20} MB limit; "
            "give its path under 'a .safetensors path' instead"
        )
    if not metas:
        raise ValueError(f"also upload the .json written beside {weights[0][0]}: it holds the config and the tokenizer")
    ((w_name, data),), ((m_name, blob),) = weights, metas
    check_checkpoint_bytes(w_name, data, m_name, blob)  # the same check as loading from disk
    return hashlib.sha256(b"".join(d for _, d in sorted(files))).hexdigest()[:16]


REPLACE_ADVICE = 'tick "Replace unknown characters with <unk>" under the prompt to read them as <unk>, or remove them'


def check_prompt(model: MiniGPT, prompt: str, replace_unknown: bool = False) -> tuple[int, ...]:
    """``<bos>`` + the prompt's token ids; ValueError (what was wrong, what to do) when it cannot be run.

    An unknown character is an error whose advice is the sidebar's "replace unknown characters" choice (the
    library's own message advises a Python argument); ``replace_unknown`` reads such characters as ``<unk>``.

    Example:
        >>> model = random_model(0)
        >>> check_prompt(model, "naïve", replace_unknown=True)
        (0, 28, 15, 2, 36, 19)
    """
    if model.tokenizer is None:
        raise ValueError(
            f"this checkpoint has no tokenizer (d_vocab={model.cfg.d_vocab}); pick a checkpoint trained with the "
            "64-symbol tokenizer, or a Hugging Face model folder with its tokenizer.json"
        )
    unknown = "replace" if replace_unknown else "error"
    try:
        return tuple(prompt_ids(model.tokenizer, prompt, model.cfg.n_ctx, what="the prompt", unknown=unknown))
    except ValueError as err:
        text = str(err)
        if " (pass unknown=" not in text:
            raise
        raise ValueError(f"{text.split(' (pass unknown=')[0]}; {REPLACE_ADVICE}") from None


def prompt_notes(prompt: str) -> list[str]:
    """Sentences about what the tokenizer silently changes in ``prompt`` (tabs become spaces).

    Example:
        >>> prompt_notes("a\\tb\\tc")
        ['the prompt has 2 tabs (at positions 1, 3): the tokenizer has no tab symbol and reads each as a space']
        >>> prompt_notes("abc")
        []
    """
    tabs = [i for i, c in enumerate(prompt) if c == "\t"]
    if not tabs:
        return []
    noun = "a tab" if len(tabs) == 1 else f"{len(tabs)} tabs"
    where = ", ".join(map(str, tabs[:10])) + (", ..." if len(tabs) > 10 else "")
    return [f"the prompt has {noun} (at position{'s' if len(tabs) > 1 else ''} {where}): the tokenizer has no "
            "tab symbol and reads each as a space"]  # fmt: skip


def selection() -> Selection:
    """The current sidebar selection (the router sets it before any page runs)."""
    return st.session_state["selection"]


def require_tokens(title: str | None = None) -> Selection:
    """The page's ``title`` (when given), then the selection; with a bad prompt, a pointer to the sidebar and a stop.

    The reason is shown once, under the prompt in the sidebar; the page keeps its title and says where to look.
    """
    if title is not None:
        st.title(title)
    sel = selection()
    if sel.token_ids is None:
        st.info("This page needs a prompt it can run: fix the prompt in the sidebar (the reason is shown under it).")
        st.stop()
    return sel


def attempt(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``, or None after an ``st.error`` saying why ``what`` could not be done.

    The analyses raise ValueError/TypeError/KeyError/IndexError for input they cannot take (a target
    that is not one character, a post-norm model, mismatched prompts); the page shows the reason and
    carries on with its other sections.
    """
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, KeyError, IndexError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        st.error(f"{what}: {message}")
        return None


def corrupted_prompt(
    where: Any, key: str, default: str | None = None, changed: str = "its longest word's first letter changed"
) -> tuple[int, ...] | None:
    """The corrupted-prompt box of the patching pages (Ablation & patching, Circuit discovery, Information flow).

    A text input (in ``where``: ``st`` or a column) whose empty value stands for ``default`` (None: the clean prompt
    with ``changed``, :func:`default_corruption`), checked as the sidebar checks the prompt and for the clean
    prompt's length, and a caption with both prompts. Returns the corrupted prompt's ids, or None after an
    ``st.error`` saying why it cannot be patched.
    """
    sel = selection()
    label = f"Corrupted prompt, as long as the clean one (empty: the clean prompt with {changed})"
    corrupted = where.text_input(label, "", key=key) or default or default_corruption(sel.prompt)
    st.caption(f"Clean: `{sel.prompt}` · corrupted: `{corrupted}`".replace("\n", "⏎"))
    ids = attempt("Corrupted prompt", check_prompt, sel.model, corrupted)
    if ids is not None and len(ids) != len(sel.token_ids):
        st.error(f"Corrupted prompt: it has {len(ids) - 1} characters and the clean one {len(sel.token_ids) - 1}; "
                 "patching needs the same length, a counterpart for every position")  # fmt: skip
        return None
    return ids


POSITION = "selected_position"  # session key: the one selected token position, shared by every page
_PICKED_ON = "selected_position_picked_on"  # session key: the model_id a position was picked on (None: not picked)


def selected_position() -> int:
    """The token position every page shows (0 = ``<bos>``): read it, never keep a copy across reruns.

    The sidebar settles it before the page runs (:func:`settle_position`), so it is always a valid position of the
    current prompt; :func:`pick_position` and :func:`pick_token` show it and set it.
    """
    return int(st.session_state[POSITION])


def select_position(pos: int) -> None:
    """Select ``pos`` for every page (what a click on a token does); it then survives prompt edits, clamped."""
    st.session_state[POSITION] = int(pos)
    st.session_state[_PICKED_ON] = selection().model_id


def settle_position(model_id: str, n_tokens: int, start: int | None) -> int:
    """This run's selected position: ``start`` (the showcase's; None or out of range: the last) until a token is
    picked and whenever the model changes; a picked position is kept, clamped to a shortened prompt."""
    last = n_tokens - 1
    if POSITION not in st.session_state or st.session_state.get(_PICKED_ON) != model_id:
        st.session_state[POSITION] = start if start is not None and 0 <= start <= last else last
        st.session_state[_PICKED_ON] = None
    st.session_state[POSITION] = min(max(int(st.session_state[POSITION]), 0), last)
    return st.session_state[POSITION]


def _adopt(key: str, then: Callable[[], None] | None = None) -> None:
    """A position widget's callback: its new value becomes the shared selection (a chip clicked off keeps it)."""
    if st.session_state.get(key) is not None:
        select_position(st.session_state[key])
    if then is not None:
        then()


def pick_position(where: Any, label: str, tokens: list[str], key: str) -> int:
    """A position selectbox bound to :func:`selected_position`: it shows the shared selection, and a choice in it
    selects that position on every page. Returns the position."""
    last, start = len(tokens) - 1, selection().position
    st.session_state[key] = min(selected_position(), last)
    names = {i: f"{i}: {t!r}" for i, t in enumerate(tokens)}
    names[last] += " (last)"
    if start is not None and 0 <= start < last:
        names[start] += " (showcase)"
    where.selectbox(label, list(names), format_func=names.__getitem__, key=key, on_change=_adopt, args=(key,))
    return st.session_state[key]


def pick_token(where: Any, label: str, names: list[str], key: str, on_pick: Callable[[], None] | None = None) -> int:
    """Clickable token chips (``st.pills``, ``names`` as their labels) bound to :func:`selected_position`: the
    selected one is lit, and a click selects that position on every page (then calls ``on_pick``)."""
    st.session_state[key] = min(selected_position(), len(names) - 1)
    where.pills(label, list(range(len(names))), format_func=names.__getitem__, key=key, on_change=_adopt,
                args=(key, on_pick))  # fmt: skip
    return st.session_state[key]


TIMINGS_ENV = "MINIGPT_DASHBOARD_TIMINGS"  # a file: every script run appends one JSON line of its server time


def log_run_time(page: str, seconds: float) -> None:
    """Append ``{"page", "seconds", "session"}`` of this script run to the file ``$MINIGPT_DASHBOARD_TIMINGS``.

    Nothing happens when the variable is unset. One line per run, written in one call (the sessions' threads
    append to the same file): the browser and load tests read the server's own time for each page from it.
    """
    path = os.environ.get(TIMINGS_ENV)
    if not path:
        return
    ctx = get_script_run_ctx()
    line = json.dumps({"page": page, "seconds": round(seconds, 6), "session": ctx.session_id if ctx else None})
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")
