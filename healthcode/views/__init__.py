"""HTTP blueprints; ``register_blueprints`` is called by the app factory."""


def register_blueprints(app) -> None:
    from . import api, health, lookup, pages, partners, wellknown

    app.register_blueprint(api.bp)
    app.register_blueprint(partners.bp)
    app.register_blueprint(wellknown.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(lookup.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(pages.api_bp)
