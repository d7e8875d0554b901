"""Where the files that ship beside the code live: the chart (dashboards and model files inside it) and monitoring/.

The checkout keeps them at its top (`chart/`, `monitoring/`), where they are edited and where Helm
and the docs point. A wheel carries copies under `llmprep/_data/` (setup.py's build step copies
them at build time), because after `pip install llmprep` nothing outside the package exists. The
installed copy wins when present; the checkout's own folder is the fallback, so an editable
install and a plain checkout read the files being edited. The lab's data and the model-repository
templates already live inside the package (`llmprep/data/`, `llmprep/templates/`).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
SOURCE_ROOT = Path(__file__).resolve().parent.parent
# The top-level folders of the checkout that the package ships (setup.py reads this list).
SHIPPED_FOLDERS = ("chart", "monitoring")


def shipped(name: str) -> Path:
    """The shipped folder or file `name` (e.g. "chart", "monitoring/prometheus-adapter.values.yaml")."""
    installed = PACKAGE_DATA / name
    return installed if installed.exists() else SOURCE_ROOT / name
