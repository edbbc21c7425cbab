#!/usr/bin/env bash
# Deploys or updates the llmux stack on a Swarm manager:
#
#   LLMUX_HOST=llm.example.com LLMUX_IMAGE=registry.example.com/llmux:1.2.3 deploy/swarm/deploy.sh [STACK]
#
# Swarm configs and secrets cannot change once created, so each one is named after a hash of its content. An
# edited config.yaml, llmux.yaml or secrets.yaml gets a new name, which changes the service and makes Swarm roll
# the replicas (start-first, drained); unchanged files keep their names and nothing restarts.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stack=${1:-llmux}

for file in config.yaml secrets.yaml; do
    if [[ ! -f "$here/$file" ]]; then
        echo "deploy.sh: $here/$file is missing; start from ${file%.yaml}.example.yaml (see deploy/README.md)" >&2
        [[ $file == config.yaml ]] && echo "  cp deploy/config.example.yaml deploy/swarm/config.yaml" >&2
        [[ $file == secrets.yaml ]] && echo "  cp deploy/swarm/secrets.example.yaml deploy/swarm/secrets.yaml" >&2
        exit 1
    fi
done

version() { sha256sum "$1" | cut -c1-12; }
LLMUX_ENTRY_VERSION=$(version "$here/llmux.yaml")
LLMUX_CONFIG_VERSION=$(version "$here/config.yaml")
LLMUX_SECRETS_VERSION=$(version "$here/secrets.yaml")
export LLMUX_ENTRY_VERSION LLMUX_CONFIG_VERSION LLMUX_SECRETS_VERSION

if [[ -z ${LLMUX_HOST:-} ]]; then
    echo "deploy.sh: set LLMUX_HOST to the public name clients use (Traefik routes it and gets its certificate)" >&2
    exit 1
fi

# Validate exactly what the replicas will read (entry file + config + secret) with the image being deployed, so a
# broken config stops here with its errors listed by YAML path instead of failing the rolling update.
# LLMUX_SKIP_CHECK=1 skips it (e.g. on a manager that cannot pull the image).
image=${LLMUX_IMAGE:-llmux:latest}
if [[ ${LLMUX_SKIP_CHECK:-0} != 1 ]]; then
    docker run --rm --network none --user 0:0 \
        -v "$here/llmux.yaml:/etc/llmux/llmux.yaml:ro" \
        -v "$here/config.yaml:/etc/llmux/config.yaml:ro" \
        -v "$here/secrets.yaml:/run/secrets/llmux-secrets.yaml:ro" \
        "$image" check /etc/llmux/llmux.yaml >/dev/null
fi

# --with-registry-auth passes this client's registry login to the nodes that pull LLMUX_IMAGE.
docker stack deploy --with-registry-auth --prune -c "$here/stack.yml" "$stack"

# Configs and secrets of earlier versions stay behind; those still used by a task are refused by `rm`, the others
# go. (During a rolling update the previous version is still in use: it goes on the next run.)
current="llmux-entry-$LLMUX_ENTRY_VERSION llmux-config-$LLMUX_CONFIG_VERSION llmux-secrets-$LLMUX_SECRETS_VERSION"
for kind in config secret; do
    docker "$kind" ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}}' | while read -r name; do
        [[ " $current " == *" $name "* ]] || docker "$kind" rm "$name" >/dev/null 2>&1 || true
    done
done
echo "deployed stack $stack (config $LLMUX_CONFIG_VERSION, secrets $LLMUX_SECRETS_VERSION); watch: docker service ps ${stack}_llmux"
