#!/usr/bin/env bash
# Regenerate the README "Usage" console examples with the embedded model (run after a new model is shipped):
#   bash bench/readme_examples.sh > /tmp/readme_examples.txt   then paste into README.md.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
export HF_HUB_OFFLINE=1
work=$(mktemp -d)
cp -r "$repo/examples" "$work/examples"
cd "$work" || exit 1
run() { echo "\$ $*"; bash -c "$*" 2>&1; echo; }
run "sew transcribe examples/hello.wav"
run "cat examples/hello.wav | sew transcribe - | wc -w"
run "sew transcribe examples/message.mp3 examples/meeting.flac examples/weather.ogg"
run "sew transcribe examples/ -o out -f srt -f json"
run "find out -type f | sort"
run "cat out/meeting.srt"
run "head -c 330 out/meeting.json; echo"
run "sew transcribe examples/ -f jsonl -q | jq -c '{source, text}'"
run "ffmpeg -loglevel error -i examples/weather.ogg -f wav - | sew transcribe - --live -f srt -q"
rm -rf "$work"
