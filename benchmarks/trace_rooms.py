"""How many rooms one dashboard ablation passes through: a trace of the Ablation page's call, room by room.

The call is the one the page makes (``state.attempt("Ablation", <the cached ablation call>, ...)``), run from a
frame that stands for the page (``dashboards.views.ablation``) with every Streamlit cache cold, on the shipped
minigpt-text and the default prompt: a zero and a mean ablation of head L1H2, the prediction after the last position.

``sys.setprofile`` sees every Python call and return. A frame of this project's packages belongs to a **room**: the
entry of ``model.TIERS``, ``interp.TIERS`` or ``dashboards.TIERS`` that is the longest prefix of its module, cut to a
folder-level unit (two dotted parts: ``model.network.config`` is in ``model.network``, ``dashboards.analyses.base``
in ``dashboards.analyses``); frames of other packages (torch, pandas, streamlit) belong to the project frame that
called them. A call into another room is a **visit**; the visits form a tree (who called whom), in which the calls
one visit makes into the same room one after the other count once (a hook-name filter called back once per hook,
two argument checks in a row). The path is that tree walked in order, each room again after every call it made
returns; printed: the distinct rooms on it, and its **returns to a room already left** (every step into a room
visited before). In brackets, the same count over every change of room, step by step, with nothing merged; then
how many times the model ran (calls of ``MiniGPT.forward``).

    python -m benchmarks.trace_rooms [--show-path] [--modules]
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

PACKAGES = ("model", "interp", "dashboards")
PAGE = "dashboards.views.ablation"


def room_table() -> tuple[tuple[str, ...], ...]:
    """Every room prefix of the three packages' TIERS tables, ``dashboards.views`` included."""
    import dashboards
    import interp
    import model

    return tuple(prefix for package in (model, interp, dashboards) for tier in package.TIERS for prefix in tier)


def room_of(module: str, prefixes: tuple[str, ...] | None) -> str:
    """The folder-level room of ``module``: its longest TIERS prefix, cut to two dotted parts (``prefixes`` None:
    the module itself, a finer count)."""
    if prefixes is None:
        return module
    best = max((p for p in prefixes if module == p or module.startswith(p + ".")), key=len, default=module)
    return ".".join(best.split(".")[:2])


class Visit:
    """A stay in one room: the rooms it called, in order (a node of the call tree of rooms)."""

    def __init__(self, room: str, parent: Visit | None) -> None:
        self.room, self.parent, self.calls = room, parent, []

    def path(self) -> list[str]:
        """This visit's room, each call's path and this room again after it: the rooms in the order they run."""
        out = [self.room]
        for call in self.calls:
            out += [*call.path(), self.room]
        return out


class RoomTrace:
    """A ``sys.setprofile`` function that builds the call tree of rooms (see the module doc).

    ``raw``: every change of room, step by step. The tree merges the calls one visit makes into the same room one
    after the other (a hook-name filter called back once per hook, two argument checks in a row): one pass.
    """

    def __init__(self, prefixes: tuple[str, ...] | None) -> None:
        from model.network.minigpt import MiniGPT

        self.prefixes, self.raw, self._rooms = prefixes, [], {}
        self.forwards, self._forward = 0, MiniGPT.forward.__code__
        self.root: Visit | None = None
        self._here: Visit | None = None

    def _room(self, frame) -> str | None:
        code = frame.f_code
        if code not in self._rooms:
            module = frame.f_globals.get("__name__", "")
            ours = module.split(".")[0] in PACKAGES
            self._rooms[code] = room_of(module, self.prefixes) if ours else None
        return self._rooms[code]

    def _caller_room(self, frame) -> str | None:
        caller, room = frame.f_back, None
        while caller is not None and room is None:
            room, caller = self._room(caller), caller.f_back
        return room

    def __call__(self, frame, event: str, arg) -> None:
        if event not in ("call", "return") or (room := self._room(frame)) is None:
            return
        if event == "call":
            self.forwards += frame.f_code is self._forward
            if self._here is None:
                self.root = self._here = Visit(room, None)
            elif room != self._here.room:
                calls = self._here.calls
                if not (calls and calls[-1].room == room):
                    calls.append(Visit(room, self._here))
                self._here = calls[-1]
        else:
            room = self._caller_room(frame)
            if room is not None and room != self._here.room and self._here.parent is not None:
                self._here = self._here.parent
        if room is not None and (not self.raw or self.raw[-1] != room):
            self.raw.append(room)

    @property
    def path(self) -> list[str]:
        return self.root.path() if self.root else []

    @staticmethod
    def counts(path: list[str]) -> tuple[int, int]:
        """(distinct rooms entered, returns to a room already left) along ``path``."""
        seen, returns = set(), 0
        for room in path:
            returns += room in seen
            seen.add(room)
        return len(seen), returns


def page_request(method: str):
    """The Ablation page's call for ``method`` on head L1H2 at the last position, as a function defined in the
    page's module (so its frame is in ``dashboards.views``), and a warm-up call on another prompt."""
    from dashboards import analyses, state
    from model.network.minigpt import MiniGPT

    model = MiniGPT.from_pretrained("minigpt-text").eval().requires_grad_(False)
    model_id = "shipped:minigpt-text"

    def ids_of(prompt: str) -> tuple[int, ...]:
        return state.check_prompt(model, prompt)

    args = "ids, ((1, 2),), (), '', method, len(ids) - 1"
    if hasattr(state, "ModelRef"):  # after: one hashable model reference, one module per page family
        call, names = f"analyses.ablation.ablation_effect, ref, {args}", {"ref": state.ModelRef(model, model_id)}
    else:  # before: (model, model_id) threaded through
        call, names = f"analyses.ablation_effect, model, model_id, {args}", {"model": model, "model_id": model_id}
    source = f"def request(ids):\n    return state.attempt('Ablation', {call})\n"
    scope = {"__name__": PAGE, "state": state, "analyses": analyses, "method": method, **names}
    exec(compile(source, PAGE.replace(".", "/") + ".py", "exec"), scope)
    return scope["request"], ids_of("a list of the arguments"), ids_of(state.DEFAULT_PROMPT)


def trace(method: str, modules: bool = False) -> RoomTrace:
    """The rooms (``modules``: the modules) of one cold ablation request by ``method``."""
    import streamlit as st

    request, warm_ids, ids = page_request(method)
    assert request(warm_ids) is not None, "the warm-up request failed"  # imports and lazy tables loaded
    st.cache_data.clear()
    st.cache_resource.clear()
    tracer = RoomTrace(None if modules else room_table())
    sys.setprofile(tracer)
    try:
        result = request(ids)
    finally:
        sys.setprofile(None)
    assert result is not None, "the traced request failed"
    return tracer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-path", action="store_true", help="print the path of rooms, step by step")
    parser.add_argument("--modules", action="store_true", help="count modules instead of folder-level rooms")
    args = parser.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print("One Ablation-page request (head L1H2, last position, minigpt-text, default prompt, cold caches)")
    for method in ("zero", "mean"):
        tracer = trace(method, args.modules)
        (rooms, returns), (_, raw_returns) = tracer.counts(tracer.path), tracer.counts(tracer.raw)
        unit = "modules" if args.modules else "rooms"
        steps = f"{raw_returns} counting every call back, step by step"
        print(f"  {method:5s} ablation: {rooms} {unit} entered, {returns} returns to a room already left ({steps}); "
              f"model runs: {tracer.forwards}")  # fmt: skip
        if args.show_path:
            print("    " + " -> ".join(tracer.path))


if __name__ == "__main__":
    main()
