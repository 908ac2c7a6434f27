"""The OpenAPI document as the responses really are.

FastAPI documents its own validation array for 422; wildscan answers every refusal with
``{"detail": {"reason", "message", ...}}``. This replaces the error schemas with that body
(its ``reason`` one of :class:`vision.errors.Reason`), and adds the refusals that
dependencies give but routes do not declare: 401 for a missing key, 403 and 404 on the
gallery routes (and an unknown category to export), 400 for a body that cannot be parsed,
503 while the model loads.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from vision.errors import Reason

ERROR = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "object",
            "required": ["reason", "message"],
            "properties": {
                "reason": {"type": "string", "enum": [str(r) for r in Reason]},
                "message": {"type": "string", "description": "what went wrong, in words a person can act on"},
                "file": {"type": "string", "description": "the upload the refusal is about"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        }
    },
}
EXTRA = {
    "400": "the body could not be parsed (not JSON, or a broken multipart form)",
    "401": "no valid API key",
    "403": "this key may not do that (gallery routes need an admin key; keyless mode answers only this machine)",
    "404": "no such category or gallery",
    "503": "the model is still loading, or the server is shutting down",
}


def openapi_schema(app: FastAPI) -> dict:
    """The app's OpenAPI document (built once), with the real error bodies."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            wanted = ["503"] if path.startswith("/v1/") else []
            wanted += ["401"] if operation.get("security") else []
            wanted += ["403"] if operation.get("security") else []
            wanted += ["404"] if "{category}" in path or path == "/v1/galleries/export" else []
            wanted += ["400"] if "requestBody" in operation else []
            for code in wanted:
                responses.setdefault(code, {"description": EXTRA[code]})
            for code, response in responses.items():
                if code[0] in "45":
                    content = response.setdefault("content", {}).setdefault("application/json", {})
                    content["schema"] = {"$ref": "#/components/schemas/Error"}
    files = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    files["properties"]["files"]["minItems"] = 1
    app.openapi_schema = schema
    return schema
