"""RS Reasoner QGIS plugin: segment remote-sensing imagery by description.

The plugin never imports torch or the backend: it talks HTTP to a local backend
(``rs-reasoner serve``) that runs in its own Python environment.
"""


def classFactory(iface):  # noqa: N802, ANN001, ANN201 - QGIS plugin entry point
    """QGIS calls this to create the plugin (``iface`` is None under qgis_process)."""
    from .plugin import RsReasonerPlugin

    return RsReasonerPlugin(iface)
