#!/bin/sh
# Send one call event from an Asterisk (or FreePBX) dialplan to the hub's PBX webhook, signed
# with HMAC-SHA256 of the body (X-Hub-Signature: sha256=<hex>). Needs sh, openssl and curl.
#
# usage: asterisk-hub-webhook.sh EVENT CALL_ID FROM TO [DIRECTION] [DURATION] [REASON] [RECORDING_URL]
#   EVENT          ringing | answered | ended | missed
#   CALL_ID        ${UNIQUEID}
#   FROM, TO       ${CALLERID(num)} and ${EXTEN} for an inbound call (our number last)
#   DIRECTION      in (default) | out
#   DURATION       ${CDR(billsec)}: seconds of talk
#   REASON         ${DIALSTATUS} for a missed call (NOANSWER, BUSY, CHANUNAVAIL, CONGESTION, CANCEL)
#   RECORDING_URL  where the hub's operators can listen to the MixMonitor file
#
# environment (set them in the script's copy, or in /etc/default/hub-webhook):
#   HUB_URL         e.g. https://hub.example.com/webhooks/pbx/office
#   HUB_PBX_SECRET  the channel's `secret` (or HUB_PBX_SECRET_FILE: a file holding it)
#
# Every argument is reduced to the characters it may contain, so a caller ID someone forged
# cannot break the JSON. Exit status: curl's (22 when the hub answers 4xx/5xx).
set -eu

[ -r /etc/default/hub-webhook ] && . /etc/default/hub-webhook

: "${HUB_URL:?set HUB_URL, e.g. https://hub.example.com/webhooks/pbx/office}"
if [ -z "${HUB_PBX_SECRET:-}" ] && [ -n "${HUB_PBX_SECRET_FILE:-}" ]; then
    HUB_PBX_SECRET=$(cat "$HUB_PBX_SECRET_FILE")
fi
: "${HUB_PBX_SECRET:?set HUB_PBX_SECRET (the pbx channel secret) or HUB_PBX_SECRET_FILE}"

if [ "$#" -lt 4 ]; then
    echo "usage: $0 EVENT CALL_ID FROM TO [DIRECTION] [DURATION] [REASON] [RECORDING_URL]" >&2
    exit 2
fi

only() { printf '%s' "$1" | tr -cd "$2"; }

event=$(only "$1" 'a-z')
call_id=$(only "$2" '0-9A-Za-z._-')
from=$(only "$3" '0-9+')
to=$(only "$4" '0-9+')
direction=$(only "${5:-in}" 'a-z')
duration=$(only "${6:-}" '0-9')
reason=$(only "${7:-}" 'A-Za-z_-')
recording=$(only "${8:-}" 'A-Za-z0-9:/._~%?=&+-')

body="{\"event\":\"$event\",\"call_id\":\"$call_id\",\"from\":\"$from\",\"to\":\"$to\",\"direction\":\"$direction\""
[ -n "$duration" ] && body="$body,\"duration\":$duration"
[ -n "$reason" ] && [ "$event" = "missed" ] && body="$body,\"reason\":\"$reason\""
[ -n "$recording" ] && body="$body,\"recording_url\":\"$recording\""
body="$body}"

# "SHA2-256(stdin)= <hex>" (OpenSSL 3) or "(stdin)= <hex>" (1.1): keep the hex.
signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$HUB_PBX_SECRET" | sed 's/^.*= //')

exec curl --silent --show-error --fail --max-time 5 --retry 3 --retry-connrefused \
    -H 'Content-Type: application/json' \
    -H "X-Hub-Signature: sha256=$signature" \
    --data-binary "$body" \
    "$HUB_URL"
