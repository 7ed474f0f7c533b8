"""``python -m napari_cvdm.cli`` (what torchrun starts) runs the ``napari-cvdm`` command line."""

import sys

from . import main

sys.exit(main())
