"""Processing provider: "Segment by description" for the toolbox, modeler, batch mode and
qgis_process."""
