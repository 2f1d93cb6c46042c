"""ASGI entry point for uvicorn: `guahao.asgi:app`."""
from guahao.app import create_app

app = create_app()
