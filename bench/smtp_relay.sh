#!/bin/bash
# Outbound benchmark: Pillarbox against Postfix, in the same run.
# smtp_accept.sh with MODE=relay: both servers accept 2 KB messages for a
# foreign domain (sink.test) from a trusted client (127.0.0.0/8) and relay
# them through relayhost [127.0.0.1]:SINK_PORT to Postfix's smtp-sink, without
# TLS; a run's time ends when the sink has counted the last message, and the
# script stops if the sink counted another number than was sent. Same options
# and environment as smtp_accept.sh (N_MULTI, N_SINGLE, SESSIONS, RUNS...).
exec env MODE=relay "$(dirname "${BASH_SOURCE[0]}")/smtp_accept.sh" "$@"
