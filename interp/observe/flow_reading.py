"""Reading an information flow (:mod:`interp.observe.flow`) for one prediction: the prediction itself, the edges
into one state, and what one edge's part most promotes and suppresses.

These are the questions the flow graph is read with (the dashboard's Information flow page asks them on every
click): each takes the frames of :mod:`interp.observe.flow` or one cached run, and adds no forward of its own.

Example:
    >>> from model import MiniGPT
    >>> from interp.observe.flow import edge_logit_effects, flow_stages, information_flow
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> tokens = model.to_tokens("qwertyuiop qwertyuiop")
    >>> top_guess(model, tokens, 14).target_str  # after the second "e"
    'r'
    >>> flow = information_flow(model, tokens)
    >>> into = flow_into(flow, len(flow_stages(model)) - 1, 14)  # what the last attention layer added at that "e"
    >>> into[into.component_type == "head"].iloc[0].upstream_str  # its strongest head reads the "r" after the first "e"
    'r'
    >>> strongest_effects(edge_logit_effects(model, tokens, into.iloc[:1]), k=1).target_str.tolist()[0]
    'r'
"""

from __future__ import annotations

import pandas as pd
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_index, check_int
from interp.observe.flow import COLUMNS, flow_stages, state_readout
from model.network.minigpt import MiniGPT


def top_guess(model: MiniGPT, tokens: Int[Tensor, "1 pos"] | str, position: int, cache: object = None) -> pd.Series:
    """The model's own top prediction after ``position``, the one a flow explains: ``target, target_str, logit,
    target_prob`` (the first row of :func:`~interp.observe.flow.state_readout` at the last stage), read from
    ``cache`` when one is given.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> guess = top_guess(model, "hello", 5)
        >>> int(guess.target) == int(model(model.to_tokens("hello"))[0, 5].argmax())
        True
    """
    return state_readout(model, tokens, len(flow_stages(model)) - 1, position, cache).iloc[0]


def flow_into(flow: pd.DataFrame, stage: int, position: int) -> pd.DataFrame:
    """The edges of ``flow`` into the state at ``stage`` and ``position``, most important first: the parts that built
    that state (none build the embeddings, stage 0).

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> from interp.observe.flow import information_flow
        >>> into = flow_into(information_flow(MiniGPT(ModelConfig(), seed=0), "hi"), 1, 2)
        >>> sorted(set(into.component_type)), len(into)  # 4 heads reading 3 positions, and the residual carried through
        (['head', 'residual'], 13)
    """
    if not isinstance(flow, pd.DataFrame) or not set(COLUMNS) <= set(flow.columns):
        raise TypeError("flow must be the frame of information_flow(model, tokens)")
    stage = check_index(stage, int(flow.downstream_stage.max()) + 1, "stage")
    position = check_index(position, int(flow.downstream_pos.max()) + 1, "position")
    into = flow[(flow.downstream_stage == stage) & (flow.downstream_pos == position)]
    return into.sort_values("importance", ascending=False, kind="stable")


def strongest_effects(effects: pd.DataFrame, k: int = 8) -> pd.DataFrame:
    """The ``k`` most promoted and the ``k`` most suppressed next tokens of a frame of
    :func:`~interp.observe.flow.edge_logit_effects`, largest effect first (each token once).

    Example:
        >>> effects = pd.DataFrame({"target": [3, 1, 2], "target_str": list("cab"), "logit_effect": [0.5, 2.0, -1.0]})
        >>> strongest_effects(effects, k=1).target_str.tolist()
        ['a', 'b']
    """
    if not isinstance(effects, pd.DataFrame) or not {"target", "logit_effect"} <= set(effects.columns):
        raise TypeError("effects must be the frame of edge_logit_effects(model, tokens, edge)")
    k = check_int(k, "k", minimum=1)
    ranked = effects.sort_values("logit_effect", ascending=False, kind="stable")
    return pd.concat([ranked.head(k), ranked.tail(k)]).drop_duplicates("target")
