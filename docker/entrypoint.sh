#!/bin/sh
# Entry point of the tango-receiver image.
#
#   IMAGE NAME [serve options]   serve receiver NAME of $TANGO_RECEIVER_CONFIG: the Tango device
#                                server with the REST sidecar. NAME may instead come from
#                                $TANGO_RECEIVER_NAME (Kubernetes sets it from a ConfigMap).
#   IMAGE SUBCOMMAND [args]      any tango-receiver subcommand, so one image also plays the
#                                simulator of a dry run (simulate) or stitches a split series.
#
# TANGO_HOST set: the device server uses that Tango database. TANGO_HOST unset or empty: it runs
# without a database (-nodb) on $TANGO_DEVICE_PORT, which is what a dry run has. LOG_LEVEL is
# checked here because the program falls back to INFO on a value it does not know, and a typo
# that silently drops DEBUG costs a night of debugging.
set -eu

usage() {
    echo "usage: IMAGE RECEIVER_NAME [serve options] | IMAGE SUBCOMMAND [args]" >&2
    echo "       (or set TANGO_RECEIVER_NAME); receivers are the keys of $TANGO_RECEIVER_CONFIG" >&2
}

LOG_LEVEL=$(printf '%s' "${LOG_LEVEL:-INFO}" | tr '[:lower:]' '[:upper:]')
case "$LOG_LEVEL" in
    DEBUG | INFO | WARNING | ERROR | CRITICAL) export LOG_LEVEL ;;
    *)
        echo "entrypoint: LOG_LEVEL=$LOG_LEVEL is not DEBUG, INFO, WARNING, ERROR or CRITICAL" >&2
        exit 64
        ;;
esac

if [ -n "${TANGO_RECEIVER_NAME:-}" ]; then
    case "${1:--}" in
        -*) set -- "$TANGO_RECEIVER_NAME" "$@" ;;
    esac
fi
if [ "$#" -eq 0 ]; then
    usage
    exit 64
fi

case "$1" in
    -* | run | serve | simulate | stitch | demo | bench) exec tango-receiver "$@" ;;
esac

name=$1
shift
if [ -z "${TANGO_HOST:-}" ]; then
    unset TANGO_HOST
    echo "entrypoint: $name: no TANGO_HOST, device server without a database on port" \
        "$TANGO_DEVICE_PORT" >&2
    exec tango-receiver serve "$TANGO_RECEIVER_CONFIG" "$name" --nodb --port "$TANGO_DEVICE_PORT" "$@"
fi
echo "entrypoint: $name: Tango database $TANGO_HOST, device server port $TANGO_DEVICE_PORT" >&2
exec tango-receiver serve "$TANGO_RECEIVER_CONFIG" "$name" --port "$TANGO_DEVICE_PORT" "$@"
