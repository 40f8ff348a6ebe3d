#!/usr/bin/env bash
# openssl: the OTLP sink's TLS test makes a private CA and a server
# certificate with it.
exec bash "$(dirname "$0")/../need-command" openssl openssl "the OTLP TLS test's private CA"
