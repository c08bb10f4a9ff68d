#!/usr/bin/env python3
"""Validates an OpenAPI 3.1 document with PyPI openapi-spec-validator (its 3.1 validator,
whatever version the document claims).

    conformance/.venv/bin/python conformance/openapi_check.py [FILE|-]

Reads the JSON document from FILE, or from stdin when FILE is `-` or left out. Prints
"valid" and exits 0, or prints every error the validator finds and exits 1. The integration
test tests/api/openapi.rs feeds it Lanyard's admin API document.
"""

import json
import sys

from openapi_spec_validator import OpenAPIV31SpecValidator


def main() -> int:
    source = sys.argv[1] if len(sys.argv) > 1 else "-"
    try:
        if source == "-":
            doc = json.load(sys.stdin)
        else:
            with open(source, encoding="utf-8") as f:
                doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read the document from {source}: {e}", file=sys.stderr)
        return 1
    errors = list(OpenAPIV31SpecValidator(doc).iter_errors())
    for e in errors:
        where = "/".join(str(p) for p in getattr(e, "absolute_path", []))
        print(f"invalid at /{where}: {e.message}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} error(s): not a valid OpenAPI 3.1 document", file=sys.stderr)
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
