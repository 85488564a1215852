"""The one cached model or ``interp`` call behind each chart: the pages' one door to the model.

One module per page family, as in :mod:`dashboards.plots`, each over the one cached forward of a prompt in
:mod:`~dashboards.analyses.base`: ``model`` (Model & prediction, Model card), ``attention``, ``residual``
(Residual stream, Direct logit attribution), ``ablation`` (Ablation & patching), ``qk_ov``, ``features``,
``graph`` (Circuit discovery), ``flow`` (Information flow) and ``dynamics`` (Training dynamics). A page calls
``analyses.<family>.<name>(sel.ref, ...)``: every cached function takes the model as one
:class:`~dashboards.state.ModelRef` (hashed by its id) and prompts as tuples of token ids. No maths here: each
function is one ``interp`` (or model) call, cached, and what the page needs to lay its result out.
"""

from dashboards.analyses import (
    ablation,
    attention,
    base,
    dynamics,
    features,
    flow,
    graph,
    model,
    qk_ov,
    residual,
)
from dashboards.analyses.base import symbols

__all__ = [
    "ablation",
    "attention",
    "base",
    "dynamics",
    "features",
    "flow",
    "graph",
    "model",
    "qk_ov",
    "residual",
    "symbols",
]
