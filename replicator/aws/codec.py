"""Scan pages parsed by ``json`` instead of botocore's parser (``_parse_scan_items``)."""

from __future__ import annotations

import base64
import gc
import json
from typing import Any


def _parse_scan_items(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """Parse a Scan page's items here, and leave botocore the rest of the response.

    botocore's parser walks every attribute value through the model, about
    five times the cost of ``json.loads`` and ``_attribute_value``, and a 1 MB
    page holds thousands of items: parsed by botocore, one page held up the
    event loop for a second or more, long enough for the calls in flight to
    overrun their timeouts. The items come out as botocore would return them.

    The cyclic garbage collector is paused meanwhile: a page is hundreds of
    thousands of new dicts and lists, none of them in a cycle, and collections
    triggered by their allocation (full ones too, over every live page) took
    two thirds of the parse.
    """
    body = response_dict.get("body")
    if response_dict.get("status_code") != 200 or not body:
        return
    collecting = gc.isenabled()
    gc.disable()
    try:
        parsed = json.loads(body)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("Items"), list):
            return
        customized_response_dict["Items"] = [
            {name: _attribute_value(value) for name, value in item.items()}
            for item in parsed.pop("Items")
        ]
    except ValueError:
        return  # botocore reports it
    finally:
        if collecting:
            gc.enable()
    response_dict["body"] = json.dumps(parsed).encode()


def _attribute_value(value: dict[str, Any]) -> dict[str, Any]:
    """A wire AttributeValue as botocore returns it: binary values decoded from base64."""
    if "S" in value or "N" in value or "SS" in value or "NS" in value:
        return value
    if "M" in value:
        return {"M": {name: _attribute_value(inner) for name, inner in value["M"].items()}}
    if "L" in value:
        return {"L": [_attribute_value(inner) for inner in value["L"]]}
    if "B" in value:
        return {"B": base64.b64decode(value["B"])}
    if "BS" in value:
        return {"BS": [base64.b64decode(inner) for inner in value["BS"]]}
    return value  # BOOL, NULL
