"""The commander's dashboard: a Textual app that talks only to the control bus.

Layout of the package: :mod:`ui.state` is the model (views over the bus's
:class:`~edge.bus.mirror.Mirror`, no Textual), :mod:`ui.bridge` feeds it from
the bus in a worker, :mod:`ui.app` is the application, which handles what
panes and screens ask for (:mod:`ui.requests`) and runs commands through one
flow (:mod:`ui.commands`); :mod:`ui.severity` colours every word; screens,
widgets, dialogs and the palette are in their own modules and styles in
``ui/styles/*.tcss``.
"""
