#!/usr/bin/env bash
# Build, push and roll out portfolio-mc on ECS Fargate, in the only safe order:
#
#   1. build both images and push them to ECR (tag: the git commit unless --tag is given)
#   2. register the three task definitions (ecs/task-*.json with ACCOUNT/REGION/IMAGE_TAG filled
#      in, and each secret's full ARN looked up in Secrets Manager)
#   3. run the one-off migrate task and wait for it to exit 0 (stop here otherwise)
#   4. point the api service at the new revision, wait until it is stable, and check that it
#      runs the new revision (a rollback by the circuit breaker is "stable" too): stop otherwise;
#      with API_URL set, check through the load balancer that it reaches Postgres and Redis
#      (GET /ready): the health checks ECS and the load balancer make ask only whether it is alive
#   5. then the worker service, checked the same way (old workers drain: SIGTERM, up to
#      SHUTDOWN_GRACE_SECS)
#
# The services, target group and scaling policies must exist already: see ecs/README.md
# ("First deployment"). Needs: aws CLI v2 (its hints use `aws logs tail`, which v1 lacks),
# docker (with buildx for --platform), git.
#
#   AWS_ACCOUNT_ID=123456789012 AWS_REGION=eu-west-1 \
#   SUBNETS=subnet-aaa,subnet-bbb SECURITY_GROUPS=sg-ccc ecs/deploy.sh
#   ecs/deploy.sh --dry-run        # prints every command instead of running it
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ecs/deploy.sh [--dry-run] [--tag TAG] [--skip-build] [--no-rollout]

  --dry-run     print the commands (with placeholders where a value would come from AWS)
  --tag TAG     image tag to build and deploy (default: git rev-parse --short=12 HEAD)
  --skip-build  deploy images already in ECR under TAG
  --no-rollout  stop after the migrations (first deployment: the services do not exist yet)

Environment:
  AWS_ACCOUNT_ID   12-digit account id                      (required unless --dry-run)
  AWS_REGION       region, e.g. eu-west-1                   (required unless --dry-run)
  CLUSTER          ECS cluster                               (default: portfolio-mc)
  API_SERVICE      api service name                          (default: portfolio-api)
  WORKER_SERVICE   worker service name                       (default: portfolio-worker)
  SUBNETS          comma-separated private subnets for the migrate task (required unless --dry-run)
  SECURITY_GROUPS  comma-separated security groups for the migrate task (required unless --dry-run)
  PLATFORM         image platform                            (default: linux/amd64, as runtimePlatform)
  API_URL          the API's address through the load balancer, e.g. https://api.example.com:
                   after the API's rollout, GET /ready must answer 200 within a minute, or the
                   workers are not rolled out (default: unset, the check is skipped)
USAGE
}

DRY_RUN=0
SKIP_BUILD=0
ROLLOUT=1
IMAGE_TAG="${IMAGE_TAG:-}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --skip-build) SKIP_BUILD=1 ;;
        --no-rollout) ROLLOUT=0 ;;
        --tag)
            [[ $# -ge 2 ]] || { echo "--tag needs a value" >&2; exit 2; }
            IMAGE_TAG="$2"
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ECS_DIR="$REPO_ROOT/ecs"

CLUSTER="${CLUSTER:-portfolio-mc}"
API_SERVICE="${API_SERVICE:-portfolio-api}"
WORKER_SERVICE="${WORKER_SERVICE:-portfolio-worker}"
PLATFORM="${PLATFORM:-linux/amd64}"
AWS_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
AWS_ACCOUNT_ID="${AWS_ACCOUNT_ID:-}"
SUBNETS="${SUBNETS:-}"
SECURITY_GROUPS="${SECURITY_GROUPS:-}"

if [[ $DRY_RUN -eq 1 ]]; then
    # Placeholders keep the printed commands readable when nothing is configured.
    AWS_ACCOUNT_ID="${AWS_ACCOUNT_ID:-123456789012}"
    AWS_REGION="${AWS_REGION:-eu-west-1}"
    SUBNETS="${SUBNETS:-subnet-PRIVATE_SUBNET_A,subnet-PRIVATE_SUBNET_B}"
    SECURITY_GROUPS="${SECURITY_GROUPS:-sg-WORKER_SECURITY_GROUP}"
else
    missing=()
    for name in AWS_ACCOUNT_ID AWS_REGION SUBNETS SECURITY_GROUPS; do
        [[ -n "${!name}" ]] || missing+=("$name")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "set ${missing[*]} (see --help)" >&2
        exit 2
    fi
fi

if [[ -z "$IMAGE_TAG" ]]; then
    IMAGE_TAG="$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD)"
fi

REGISTRY="${AWS_ACCOUNT_ID}.dkr.ecr.${AWS_REGION}.amazonaws.com"
API_IMAGE="${REGISTRY}/portfolio-api:${IMAGE_TAG}"
WORKER_IMAGE="${REGISTRY}/portfolio-worker:${IMAGE_TAG}"

log() { printf '\n==> %s\n' "$*" >&2; }

# Runs a command, or prints it under --dry-run.
run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Runs a command and prints its output (for values such as ARNs); under --dry-run prints the
# command to stderr and the placeholder given as first argument to stdout.
capture() {
    local placeholder="$1"
    shift
    if [[ $DRY_RUN -eq 1 ]]; then
        {
            printf '+'
            printf ' %q' "$@"
            printf '\n'
        } >&2
        printf '%s\n' "$placeholder"
    else
        "$@"
    fi
}

# Fills the placeholders of a task definition template (ecs/task-*.json).
render() {
    local template="$1" out="$2"
    sed -e "s|\"ACCOUNT\.dkr\.ecr\.REGION\.amazonaws\.com/|\"${REGISTRY}/|g" \
        -e "s|:IMAGE_TAG\"|:${IMAGE_TAG}\"|g" \
        -e "s|:REGION:|:${AWS_REGION}:|g" \
        -e "s|:ACCOUNT:|:${AWS_ACCOUNT_ID}:|g" \
        -e "s|\"REGION\"|\"${AWS_REGION}\"|g" \
        "$template" >"$out"
    if grep -Eq '(^|[^A-Z_])(ACCOUNT|REGION|IMAGE_TAG)([^A-Z_]|$)' "$out"; then
        echo "$template: a placeholder was left unfilled in $out" >&2
        exit 1
    fi
}

# The templates name each secret by a partial ARN (no random suffix: they cannot know it).
# Register the full ARN instead, looked up by name, so that the task definition says exactly
# which secret it reads and a missing secret stops the deploy here, not at the task's start.
resolve_secrets() {
    local file="$1" partial name full
    while IFS= read -r partial; do
        name="${partial#*:secret:}"
        full="$(capture "${partial}-AbCdEf" aws secretsmanager describe-secret \
            --region "$AWS_REGION" --secret-id "$name" --query ARN --output text)"
        # shellcheck disable=SC2053 # a glob on purpose: the partial ARN, a dash, 6 characters
        if [[ "$full" != ${partial}-?????? ]]; then
            echo "secret ${name}: Secrets Manager answered ${full:-nothing}, not its full ARN;" \
                "create the secret first (ecs/README.md, First deployment)" >&2
            exit 1
        fi
        sed -i -e "s|\"${partial}\"|\"${full}\"|g" "$file"
    done < <(grep -o '"arn:aws:secretsmanager:[^":]*:[0-9]*:secret:[^":]*"' "$file" | tr -d '"' | sort -u)
}

# The services-stable waiter also succeeds when the deployment circuit breaker has rolled a
# service back to its previous task definition. Fails loudly unless the PRIMARY deployment
# runs the revision just registered and its rollout COMPLETED.
check_rollout() {
    local service="$1" expected="$2" state running rollout
    # shellcheck disable=SC2016 # the backticks are a JMESPath literal, not a command substitution
    state="$(capture "${expected} COMPLETED" aws ecs describe-services --region "$AWS_REGION" \
        --cluster "$CLUSTER" --services "$service" \
        --query 'services[0].deployments[?status==`PRIMARY`] | [0].[taskDefinition, rolloutState]' \
        --output text)"
    read -r running rollout <<<"$state"
    if [[ "$running" != "$expected" || "$rollout" != "COMPLETED" ]]; then
        {
            echo
            echo "ROLLOUT FAILED: ${service} runs ${running:-nothing} (rollout ${rollout:-unknown}),"
            echo "not ${expected}: the circuit breaker rolled it back, or the rollout did not finish."
            echo "Nothing after it was rolled out. Why: aws ecs describe-services --region ${AWS_REGION} \\"
            echo "  --cluster ${CLUSTER} --services ${service} --query 'services[0].events[:10]'"
        } >&2
        exit 1
    fi
}

# The API is alive (its health checks pass) but may not reach its stores: a well-formed but
# wrong host in a secret passes every health check. GET /ready asks Postgres and Redis.
check_ready() {
    if [[ -z "${API_URL:-}" ]]; then
        log "API_URL is not set: the readiness check through the load balancer is skipped"
        return
    fi
    local url="${API_URL%/}/ready"
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '+ curl -fsS --max-time 5 %q\n' "$url"
        return
    fi
    for _ in $(seq 12); do
        if curl -fsS --max-time 5 "$url" >/dev/null; then
            log "the API reaches Postgres and Redis (${url})"
            return
        fi
        sleep 5
    done
    {
        echo
        echo "NOT READY: ${url} did not answer 200 within a minute: the new API runs but does not"
        echo "reach Postgres or Redis (check the secrets' hosts and the security groups). The"
        echo "workers were not rolled out. Its answer: curl -sS ${url}"
    } >&2
    exit 1
}

WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT

log "deploying ${IMAGE_TAG} to cluster ${CLUSTER} in ${AWS_REGION}"

# 1. Images.
if [[ $SKIP_BUILD -eq 0 ]]; then
    log "building and pushing ${API_IMAGE} and ${WORKER_IMAGE}"
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '+ aws ecr get-login-password --region %q | docker login --username AWS --password-stdin %q\n' \
            "$AWS_REGION" "$REGISTRY"
    else
        aws ecr get-login-password --region "$AWS_REGION" |
            docker login --username AWS --password-stdin "$REGISTRY"
    fi
    run docker build --platform "$PLATFORM" -f "$REPO_ROOT/Dockerfile.api" -t "$API_IMAGE" "$REPO_ROOT"
    run docker build --platform "$PLATFORM" -f "$REPO_ROOT/Dockerfile.worker" -t "$WORKER_IMAGE" "$REPO_ROOT"
    run docker push "$API_IMAGE"
    run docker push "$WORKER_IMAGE"
fi

# 2. Task definitions.
log "registering task definitions"
register() {
    local name="$1"
    render "$ECS_DIR/task-${name}.json" "$WORK_DIR/task-${name}.json"
    resolve_secrets "$WORK_DIR/task-${name}.json"
    capture "arn:aws:ecs:${AWS_REGION}:${AWS_ACCOUNT_ID}:task-definition/portfolio-${name}:NEW" \
        aws ecs register-task-definition --region "$AWS_REGION" \
        --cli-input-json "file://$WORK_DIR/task-${name}.json" \
        --query 'taskDefinition.taskDefinitionArn' --output text
}
MIGRATE_TD="$(register migrate)"
API_TD="$(register api)"
WORKER_TD="$(register worker)"

# 3. Migrations, before any new code serves or works.
log "running migrations (${MIGRATE_TD})"
MIGRATE_TASK="$(capture "arn:aws:ecs:${AWS_REGION}:${AWS_ACCOUNT_ID}:task/${CLUSTER}/MIGRATE_TASK_ID" \
    aws ecs run-task --region "$AWS_REGION" --cluster "$CLUSTER" \
    --task-definition "$MIGRATE_TD" --launch-type FARGATE --count 1 \
    --started-by "deploy-${IMAGE_TAG}" \
    --network-configuration "awsvpcConfiguration={subnets=[${SUBNETS}],securityGroups=[${SECURITY_GROUPS}],assignPublicIp=DISABLED}" \
    --query 'tasks[0].taskArn' --output text)"
if [[ $DRY_RUN -eq 0 && ( -z "$MIGRATE_TASK" || "$MIGRATE_TASK" == "None" ) ]]; then
    echo "the migrate task did not start (see: aws ecs run-task ... failures)" >&2
    exit 1
fi
run aws ecs wait tasks-stopped --region "$AWS_REGION" --cluster "$CLUSTER" --tasks "$MIGRATE_TASK"
# shellcheck disable=SC2016 # the backticks are a JMESPath literal, not a command substitution
EXIT_CODE="$(capture 0 aws ecs describe-tasks --region "$AWS_REGION" --cluster "$CLUSTER" \
    --tasks "$MIGRATE_TASK" \
    --query 'tasks[0].containers[?name==`migrate`].exitCode | [0]' --output text)"
if [[ "$EXIT_CODE" != "0" ]]; then
    echo "migrations failed (exit code: ${EXIT_CODE}); nothing was rolled out." >&2
    echo "logs: aws logs tail /ecs/portfolio-mc/migrate --region ${AWS_REGION} --since 30m" >&2
    exit 1
fi

if [[ $ROLLOUT -eq 0 ]]; then
    log "migrated; rollout skipped (--no-rollout). Task definitions: ${API_TD} ${WORKER_TD}"
    exit 0
fi

# 4. API, then 5. workers: each waits for the previous step to settle.
log "rolling out ${API_SERVICE} (${API_TD})"
run aws ecs update-service --region "$AWS_REGION" --cluster "$CLUSTER" --service "$API_SERVICE" \
    --task-definition "$API_TD" --query 'service.deployments[0].id' --output text
run aws ecs wait services-stable --region "$AWS_REGION" --cluster "$CLUSTER" --services "$API_SERVICE"
check_rollout "$API_SERVICE" "$API_TD"
check_ready

log "rolling out ${WORKER_SERVICE} (${WORKER_TD})"
run aws ecs update-service --region "$AWS_REGION" --cluster "$CLUSTER" --service "$WORKER_SERVICE" \
    --task-definition "$WORKER_TD" --query 'service.deployments[0].id' --output text
run aws ecs wait services-stable --region "$AWS_REGION" --cluster "$CLUSTER" --services "$WORKER_SERVICE"
check_rollout "$WORKER_SERVICE" "$WORKER_TD"

log "deployed ${IMAGE_TAG}"
