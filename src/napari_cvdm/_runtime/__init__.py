"""How jobs run: cancellation, the one progress loop (:func:`drive`), and device and precision policy.

Used by every stage (sampling, inference, training, evaluation) and by the edges (CLI, widgets); imports nothing
of the package but itself.
"""

from .progress import Cancelled, CancelToken, Progress, drive, relay

__all__ = ["CancelToken", "Cancelled", "Progress", "drive", "relay"]
