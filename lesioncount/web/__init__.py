"""The clinic web app (``lesioncount serve``): patients, visits, photo uploads counted in the background,
marked photos with corrections, the patient's course and report. Needs the ``web`` extra.

    from lesioncount.web import Settings, create_app
    app = create_app(Settings(data_dir="clinic-data"))
"""

from lesioncount.web.app import create_app
from lesioncount.web.settings import Settings

__all__ = ["Settings", "create_app"]
