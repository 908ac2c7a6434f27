"""Serving: the FastAPI app, web page and bulk scanner. Depends on `vision`; never imports torch."""
