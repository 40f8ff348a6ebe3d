# rotel logs processor used by agent-audit-otlp's and agent-audit-tests' collector tests: appends one JSON line
# per log record that reached the collector to the file named by
# AUDIT_ROTEL_OUT, with everything the tests check (event name, times,
# severity, trace/span ids, attributes, body, resource attributes).
import json
import os

OUT = os.environ["AUDIT_ROTEL_OUT"]


def conv(v):
    """An OTLP AnyValue as plain JSON-able Python."""
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


def process_logs(resource_logs):
    res = {}
    if resource_logs.resource is not None:
        for kv in resource_logs.resource.attributes:
            res[kv.key] = conv(kv.value)
    lines = []
    for sl in resource_logs.scope_logs:
        scope = sl.scope.name if sl.scope is not None else None
        for lr in sl.log_records:
            lines.append(json.dumps({
                "resource": res,
                "scope": scope,
                "event_name": lr.event_name,
                "time_unix_nano": lr.time_unix_nano,
                "observed_time_unix_nano": lr.observed_time_unix_nano,
                "severity_number": lr.severity_number,
                "severity_text": lr.severity_text,
                "trace_id": bytes(lr.trace_id).hex(),
                "span_id": bytes(lr.span_id).hex(),
                "flags": lr.flags,
                "attributes": {kv.key: conv(kv.value) for kv in lr.attributes},
                "body": conv(lr.body),
            }))
    if lines:
        # One write(2) on an O_APPEND descriptor: concurrent calls never
        # interleave inside a line.
        data = ("\n".join(lines) + "\n").encode()
        fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
