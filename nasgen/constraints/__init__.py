"""The constraints tier: the ``--where`` language, the parameter and FLOP cost model, the constrained space."""
