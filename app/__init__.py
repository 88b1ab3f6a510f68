"""HTTP only: the FastAPI app, routers, request/response schemas, dependencies and static pages."""
