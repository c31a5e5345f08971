"""The commander's dashboard: a Textual app that talks only to the control bus.

Layout of the package: :mod:`ui.state` is the model (plain dataclasses, no
Textual), :mod:`ui.bridge` feeds it from the bus in a worker, :mod:`ui.app`
is the application, with screens, widgets and dialogs in their own modules
and styles in ``ui/styles/*.tcss``.
"""
