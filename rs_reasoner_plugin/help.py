"""Where the plugin's documentation is: the plugin guide on the project's home page (the
``homepage`` of metadata.txt, the one place it is written)."""

from __future__ import annotations

import configparser
import os

from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices

#: The plugin guide inside the repository.
GUIDE_PATH = "blob/main/docs/plugin.md"

_HERE = os.path.dirname(os.path.abspath(__file__))


def _metadata_path() -> str:
    # Installed from the ZIP, metadata.txt sits in the plugin folder; in the repository,
    # one level up.
    for folder in (_HERE, os.path.dirname(_HERE)):
        path = os.path.join(folder, "metadata.txt")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("metadata.txt of the RS Reasoner plugin is missing")


def help_url(section: str = "") -> str:
    """The plugin guide's URL (``section``: an anchor such as ``fine-tuning``)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(_metadata_path(), encoding="utf-8")
    url = f"{parser['general']['homepage'].rstrip('/')}/{GUIDE_PATH}"
    return f"{url}#{section}" if section else url


def open_help(section: str = "") -> bool:
    """Open the guide in the web browser; False when no browser could be asked."""
    return QDesktopServices.openUrl(QUrl(help_url(section)))
