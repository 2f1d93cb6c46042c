"""ASGI entry point for uvicorn: `guahao.asgi:app`."""
from guahao.app import create_app
from guahao.core.children import follow_supervisor

follow_supervisor()
app = create_app()
