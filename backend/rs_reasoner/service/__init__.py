"""The local HTTP service the QGIS plugin talks to.

* :mod:`.state` — the state file (port, token, pid) clients read to find the backend.
* :mod:`.jobs` — job queue with one worker thread, progress and cancel.
* :mod:`.app` — builds the FastAPI app from the pieces below.
* :mod:`.routes_health`, :mod:`.routes_uploads`, :mod:`.routes_jobs` — the endpoints;
  :mod:`.deps` — how they get the app's job manager, pipeline and upload store.
* :mod:`.auth` (bearer token), :mod:`.errors` (errors as JSON), :mod:`.uploads` (upload
  store), :mod:`.responses` (documented answer bodies).
* :mod:`.server` — ``rs-reasoner serve``: loopback bind, uvicorn, state file lifecycle.

Nothing heavy is imported here, so ``python -m rs_reasoner.service.server`` stays cheap
until it actually starts serving.
"""
