"""The evaluation wing: perplexity and reply metrics, n-gram baselines, replay, reports, packing."""
