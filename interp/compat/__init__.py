"""TransformerLens's helper modules, for code written against TransformerLens: ``from interp.compat import utils,
patching, evals`` where a TransformerLens user writes ``from transformer_lens import utils, patching, evals``.

- :mod:`interp.compat.utils`: ``get_act_name`` (with TransformerLens's aliases) and ``test_prompt``.
- :mod:`interp.compat.patching`: TransformerLens's activation-patching functions (``get_act_patch_resid_pre`` ...,
  ``generic_activation_patch``), with its signatures and return shapes, run on the batched engine of
  :mod:`interp.intervene.engine` instead of one forward per cell.
- :mod:`interp.compat.evals`: TransformerLens's quick evaluations (``induction_loss``, ``ioi_eval`` with its IOI
  dataset, ``sanity_check``, ``evaluate_on_dataset``); those that read hub data sets say so and never download.
"""
