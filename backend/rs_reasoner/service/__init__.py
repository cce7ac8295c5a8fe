"""The local HTTP service the QGIS plugin talks to.

* :mod:`.state` — the state file (port, token, pid) clients read to find the backend.
* :mod:`.jobs` — job queue with one worker thread, progress and cancel.
* :mod:`.app` — the FastAPI app: token auth, endpoints, error mapping.
* :mod:`.server` — ``rs-reasoner serve``: loopback bind, uvicorn, state file lifecycle.

Nothing heavy is imported here, so ``python -m rs_reasoner.service.server`` stays cheap
until it actually starts serving.
"""
