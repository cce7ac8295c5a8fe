"""RS Reasoner fine-tuning (semi-supervised, VLM-purified pseudo-labels); see issue 6."""
