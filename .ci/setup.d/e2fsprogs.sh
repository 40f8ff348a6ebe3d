#!/usr/bin/env bash
# chattr (Debian's e2fsprogs): tests/tests/guarantees_faults.rs revokes write
# permission from an open audit log with the immutable attribute, which also
# stops root.
exec bash "$(dirname "$0")/../need-command" chattr e2fsprogs "revoking write permission from root in guarantees_faults"
