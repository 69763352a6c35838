# Sourced by the bench scripts (which define `say`).
#
# Deletes a JetStream stream through the JetStream API ($JS.API.STREAM.DELETE.<name>), without
# the nats CLI: one request over the plain NATS protocol.
js_delete_stream() {
    local name=$1 reply
    reply=$(timeout 5 bash -c '
        exec 3<>/dev/tcp/127.0.0.1/4222 || exit 1
        IFS= read -r _info <&3
        printf "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _BENCH_INBOX 1\r\nPUB \$JS.API.STREAM.DELETE.%s _BENCH_INBOX 0\r\n\r\nPING\r\n" "$0" >&3
        while IFS= read -r line <&3; do
            case "$line" in
            MSG*) IFS= read -r body <&3; echo "$body"; exit 0 ;;
            esac
        done' "$name" 2>/dev/null) || true
    case "$reply" in
    *'"success":true'*) say "deleted JetStream stream $name" ;;
    *'stream not found'* | "") ;;
    *) say "deleting stream $name: $reply" ;;
    esac
}
