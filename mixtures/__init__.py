"""Mixtures: which sources a training stage sees, how often, and the sampler that draws them."""
