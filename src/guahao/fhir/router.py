"""The facade's router at /fhir/R4: metadata, the OAuth2 token endpoint, and the routes of
resources.py, operations.py and bulk.py. Kept out of the JSON API's OpenAPI document: its
contract is the CapabilityStatement and the R4 schema (tests/test_fhir_*.py), its media type
application/fhir+json and its refusals OperationOutcome, not problem+json."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from guahao.core.errors import NotFound
from guahao.fhir import auth, bulk, capability, operations, resources
from guahao.fhir.outcome import FhirJSON, FhirRoute

PREFIX = "/fhir/R4"
router = APIRouter(prefix=PREFIX, route_class=FhirRoute, include_in_schema=False, tags=["fhir"])


@router.get("/metadata")
async def metadata(request: Request):
    """The CapabilityStatement: exactly what this router serves (fhir/capability.py)."""
    base = resources.base_of(request)
    return FhirJSON(capability.capability_statement(base, f"{base}/auth/token", request.app.state.clock.now()))


@router.get("/.well-known/smart-configuration")
async def smart_configuration(request: Request):
    """SMART's discovery document: where partners get a token, and how."""
    base = resources.base_of(request)
    return JSONResponse({"token_endpoint": f"{base}/auth/token", "grant_types_supported": ["client_credentials"],
                         "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                         "scopes_supported": list(auth.SCOPES), "capabilities": ["client-confidential-symmetric"]})


@router.post("/auth/token")
async def token(request: Request):
    """OAuth2 client credentials (RFC 6749 4.4) for partner systems."""
    status, body, headers = await auth.token_response(request, request.app.state.db, request.app.state.clock.now(),
                                                      resources.base_of(request))
    return JSONResponse(body, status_code=status, headers=dict(headers))


router.include_router(operations.router)  # the $operations before the reads of Appointment/{id}
router.include_router(bulk.router)
router.include_router(resources.router)

ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/{rest:path}", methods=ANY)
async def not_served(rest: str):
    """Anything else under /fhir/R4 (another resource type, interaction or operation): a
    not-found OperationOutcome, not the JSON API's problem+json. Registered last."""
    raise NotFound("resource")
