"""The API's route groups, one module each; :func:`serving.app.create_app` includes them."""
