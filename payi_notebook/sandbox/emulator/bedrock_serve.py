"""The emulator's Bedrock routes: ``/model/{modelId}/converse|converse-stream|invoke|invoke-with-response-stream``.

The model id is taken from the path as given (profiles and ARNs too); a fault suffix goes on its
end (``amazon.nova-lite-v1:0@429``) or in ``X-Emulator-Fault``. Any ``Authorization`` will do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import ids
from .bedrock import authenticate, converse, converse_stream, error_response
from .bedrock_invoke import invoke
from .call import Call
from .errors import ApiError
from .faults import FAULT_HEADER, injected_error, resolve, split_model
from .request_log import RequestRecord, without_credentials
from .validation import parse_body


def routes(emulator: Any) -> list[Route]:
    """The four operations, sharing the emulator's request log, prompt cache and fault counts."""
    handlers: dict[str, Callable[[Call], Response]] = {
        "converse": converse,
        "converse-stream": converse_stream,
        "invoke": lambda call: invoke(call, stream=False),
        "invoke-with-response-stream": lambda call: invoke(call, stream=True),
    }

    def endpoint(operation: str) -> Callable[[Request], Any]:
        handler = handlers[operation]

        async def serve(request: Request) -> Response:
            request_id = ids.hex_id("", 32)
            request_id = (
                f"{request_id[:8]}-{request_id[8:12]}-{request_id[12:16]}-{request_id[16:20]}-{request_id[20:32]}"
            )
            headers = dict(request.headers)
            record = emulator.requests.add(
                RequestRecord(
                    "bedrock",
                    request.url.path,
                    without_credentials(headers),
                    request_id,
                )
            )
            record.stream = operation.endswith("stream")
            try:
                authenticate(headers)
                requested = request.path_params["model_id"]
                model, suffix = split_model(requested)
                record.requested_model, record.model = requested, model
                faults = resolve(request.headers.get(FAULT_HEADER), suffix)
                record.faults = faults.source
                faults = emulator.fault_counter.apply(faults, (request.url.path, model, faults.source))
                body = parse_body(await request.body())
                record.body = body
                if faults.delay:
                    await asyncio.sleep(faults.delay)
                if faults.status is not None:
                    raise injected_error(faults)
                response = handler(Call(body, model, faults, request_id, emulator.prompt_cache))
            except ApiError as error:
                response = error_response(error, request_id)
            response.headers["x-amzn-requestid"] = request_id
            record.status = response.status_code
            return response

        return serve

    return [
        Route(
            f"/model/{{model_id:path}}/{operation}",
            endpoint(operation),
            methods=["POST"],
        )
        for operation in handlers
    ]
