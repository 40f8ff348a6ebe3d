# rotel logs processor for the throughput benchmark: one JSON line per
# request with the sender's service.name and how many log records it held,
# plus (AUDIT_BENCH_SEQS=1) the smallest and largest `audit.seq` and their
# sum, so duplicates or gaps would show. Kept light so the collector, not
# Python, is not the bottleneck.
import json
import os

OUT = os.environ["AUDIT_ROTEL_OUT"]
SEQS = os.environ.get("AUDIT_BENCH_SEQS") == "1"


def process_logs(resource_logs):
    service = None
    if resource_logs.resource is not None:
        for kv in resource_logs.resource.attributes:
            if kv.key == "service.name":
                service = kv.value.value
    n = 0
    lo = hi = None
    total = 0
    for sl in resource_logs.scope_logs:
        records = sl.log_records
        n += len(records)
        if SEQS:
            for lr in records:
                seq = None
                for kv in lr.attributes:
                    if kv.key == "audit.seq":
                        seq = kv.value.value
                        break
                if seq is not None:
                    total += seq
                    lo = seq if lo is None else min(lo, seq)
                    hi = seq if hi is None else max(hi, seq)
    line = json.dumps({"service": service, "n": n, "lo": lo, "hi": hi, "sum": total}) + "\n"
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
