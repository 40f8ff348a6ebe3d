#!/usr/bin/env bash
# strace: tests/tests/guarantees_crash.rs proves that a Durable receipt comes
# only after fdatasync(2) of the record's bytes.
exec bash "$(dirname "$0")/../need-command" strace strace "checking fsync order in guarantees_crash"
