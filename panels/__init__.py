"""The "Bend" panels: the VSE sidebar tab, the Graph Editor sidebar, and the preferences' dependency box."""

from . import dependencies, graph, sequencer

MODULES = (dependencies, sequencer, graph)
