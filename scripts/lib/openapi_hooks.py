"""schemathesis hooks of scripts/openapi-test (loaded through SCHEMATHESIS_HOOKS).

One rule of the example services is beyond what JSON Schema can state: the
lines of an order (or of a quote request) name each SKU once (the shipping
service keeps a package's units by SKU). The documents say so in words and
the service answers 422 naming the field; JSON Schema has no "unique by
property". So requests whose lines repeat a SKU are not generated. This
narrows the generated data for those two operations; every check still runs,
with its default expectations, on everything that is generated.
"""

import schemathesis

_UNIQUE_SKU_OPERATIONS = {("POST", "/orders"), ("POST", "/orders/quote")}


@schemathesis.hook
def filter_case(context, case):
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) not in _UNIQUE_SKU_OPERATIONS:
        return True
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return True
    skus = [item.get("sku") for item in body["items"] if isinstance(item, dict)]
    return len(skus) == len(set(map(repr, skus)))
