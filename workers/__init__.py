"""Celery workers: the app, its queues, and thin tasks that call ``app.services``."""
