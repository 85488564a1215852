"""Reading activations: the residual stream and its writers, direct logit attribution, the logit lens, attention."""
