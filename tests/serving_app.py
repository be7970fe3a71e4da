"""A WSGI target for tests that need a real 500 under real gunicorn:
``gunicorn 'tests.serving_app:failing_app()'`` serves the service plus one route that raises."""
from healthcode import create_app


def failing_app():
    app = create_app()

    @app.get("/api/v1/boom")
    def boom():
        raise RuntimeError("a bug, not bad input")

    return app
