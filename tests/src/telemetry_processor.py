# rotel trace and metrics processor for the telemetry tests: appends one
# JSON line per span to AUDIT_ROTEL_SPANS and one per metric to
# AUDIT_ROTEL_METRICS, with what the tests check (names, ids, kinds,
# attributes, resource, schema URLs, histogram counts).
import json
import os

SPANS = os.environ["AUDIT_ROTEL_SPANS"]
METRICS = os.environ["AUDIT_ROTEL_METRICS"]


def conv(v):
    if v is None:
        return None
    x = v.value
    t = type(x).__name__
    if t == "KeyValueList":
        return {x[i].key: conv(x[i].value) for i in range(len(x))}
    if t == "ArrayValue":
        return [conv(x[i]) for i in range(len(x))]
    if isinstance(x, (bytes, bytearray)):
        return {"bytes": bytes(x).hex()}
    return x


def attrs(kvs):
    return {kv.key: conv(kv.value) for kv in kvs}


def hexid(b):
    return bytes(b).hex() if b is not None else ""


def append(path, lines):
    if not lines:
        return
    # One write(2) on an O_APPEND descriptor: concurrent calls never
    # interleave inside a line.
    data = ("\n".join(lines) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def process_spans(resource_spans):
    res = attrs(resource_spans.resource.attributes) if resource_spans.resource else {}
    lines = []
    for ss in resource_spans.scope_spans:
        for s in ss.spans:
            lines.append(json.dumps({
                "resource": res,
                "resource_schema_url": resource_spans.schema_url,
                "scope": ss.scope.name if ss.scope is not None else None,
                "scope_schema_url": ss.schema_url,
                "name": s.name,
                "kind": int(s.kind) if not hasattr(s.kind, "value") else int(s.kind.value),
                "trace_id": hexid(s.trace_id),
                "span_id": hexid(s.span_id),
                "parent_span_id": hexid(s.parent_span_id),
                "attributes": attrs(s.attributes),
                "status": int(s.status.code) if s.status is not None else 0,
            }, default=str))
    append(SPANS, lines)


def process_metrics(resource_metrics):
    res = attrs(resource_metrics.resource.attributes) if resource_metrics.resource else {}
    lines = []
    for sm in resource_metrics.scope_metrics:
        for m in sm.metrics:
            points = []
            data = m.data
            # A pyo3 enum variant (MetricData_Histogram, ...) holding the
            # Histogram / Sum / Gauge as its field `_0`.
            inner = getattr(data, "_0", data)
            for p in getattr(inner, "data_points", []) or []:
                points.append({
                    "attributes": attrs(p.attributes),
                    "count": getattr(p, "count", None),
                    "sum": getattr(p, "sum", None),
                    # NumberDataPointValue_AsInt / _AsDouble: the number is `_0`.
                    "value": getattr(getattr(p, "value", None), "_0", None),
                })
            lines.append(json.dumps({
                "resource": res,
                "name": m.name,
                "unit": m.unit,
                "kind": type(data).__name__.replace("MetricData_", ""),
                "points": points,
            }, default=str))
    append(METRICS, lines)
