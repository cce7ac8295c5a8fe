"""Click-to-segment: SAM 2.1 embeds an extent once, then each click is a mask decode.

* :mod:`.schemas` — the requests (session extent, points and box);
* :mod:`.session` — one extent's image embedding and the prompt → polygon step;
* :mod:`.predictors` — where the SAM predictors come from (one model, shared);
* :mod:`.store` — the sessions a backend keeps (few: each holds an embedding).
"""
