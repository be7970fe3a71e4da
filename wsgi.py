from healthcode import create_app

app = create_app()
