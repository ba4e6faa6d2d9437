#!/bin/sh
# Entrypoint of the calls-offloader test runner images (scripts/offloader-test-images.sh).
# Env vars, as a job's input_data sets them, drive it:
#   ECHO_ENV=true     print the environment to stderr, one "env: K=V" per line
#   MARKER=text       write text to /data/marker (the job volume)
#   SLEEP_SEC=n       run for n seconds (SIGTERM ends the wait at once)
#   EXIT_CODE=n       exit code at the end (default 0)
#   TERM_EXIT_CODE=n  exit code after SIGTERM (default 0, like the real recorder)
echo "runner: starting" >&2
echo "runner: this line goes to stdout"
if [ "$ECHO_ENV" = "true" ]; then env | sort | sed 's/^/env: /' >&2; fi
if [ -n "$MARKER" ]; then echo "$MARKER" > /data/marker; fi
on_term() {
  echo "runner: got SIGTERM" >&2
  exit "${TERM_EXIT_CODE:-0}"
}
trap on_term TERM
if [ -n "$SLEEP_SEC" ]; then
  sleep "$SLEEP_SEC" &
  wait $!
fi
echo "runner: exiting with ${EXIT_CODE:-0}" >&2
exit "${EXIT_CODE:-0}"
