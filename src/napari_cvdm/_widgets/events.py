"""Plugin-wide events between dock widgets (Qt-free, psygnal).

``MODEL_EVENTS.models_changed(path)`` fires after a model file was written into the user model folder (a
fine-tuning run finished or was stopped); the reconstruction widget re-reads its model list, so the new model
is in its picker at once.  psygnal holds bound methods weakly: a closed widget is simply dropped.
"""

from __future__ import annotations

from psygnal import Signal


class _ModelEvents:
    models_changed = Signal(str)


MODEL_EVENTS = _ModelEvents()
