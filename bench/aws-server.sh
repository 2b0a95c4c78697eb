# Sourced by the AWS bench scripts (not run on its own).
#
# aws_server STEM: creates fresh tables on DynamoDB Local under a new prefix starting with
# STEM, and prints the path of a wrapper script to hand the bench as `--server-bin`. The
# bench starts "adledger serve ... --backend local --data-dir DIR"; the wrapper runs the
# AWS backend on those tables instead, with `--auth none` (a loopback bench rig). Needs B
# (the adledger binary), E (the DynamoDB endpoint) and work (a scratch directory for the
# wrapper).
aws_server() {
    local prefix="$1-$(date +%s%N)-"
    "$B" aws init --dynamodb-endpoint "$E" --table-prefix "$prefix" >/dev/null
    cat > "$work/$prefix" <<WRAP
#!/usr/bin/env bash
args=(); for a in "\$@"; do [[ \$a == local ]] && a=aws; args+=("\$a"); done
exec "$B" "\${args[@]}" --auth none --dynamodb-endpoint "$E" --table-prefix "$prefix"
WRAP
    chmod +x "$work/$prefix"
    echo "$work/$prefix"
}
