"""The inference wing: checkpoints, decoding settings, samplers, the compiled reply generator, the Responder."""
