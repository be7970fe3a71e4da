"""``healthcode serve``: gunicorn with the settings in :mod:`healthcode.gunicorn_conf`."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication


class HealthcodeApplication(BaseApplication):
    def __init__(self, options: dict | None = None):
        self.options = options or {}
        super().__init__()

    def load_config(self):
        from . import gunicorn_conf

        settings = {k: getattr(gunicorn_conf, k) for k in dir(gunicorn_conf)
                    if not k.startswith("_") and k in self.cfg.settings}
        settings.update(self.options)
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from . import create_app

        return create_app()


def run(options: dict | None = None) -> None:
    HealthcodeApplication(options).run()
