#!/usr/bin/env bash
# Deploys the image tagged TAG to one environment on App Engine flexible. The pipeline's only deploy step
# (deploy/ci/project-ci.yml: DEV, PPRD, PRD and rollback all call it), and what an operator runs by hand.
#
#   IMAGE_REPOSITORY=europe-west1-docker.pkg.dev/PROJECT/mqtt-ingest/mqtt-ingest deploy/deploy.sh prd 3f2c1a9
#
# The project comes from the environment's generated descriptor (deploy/appengine/ENV.yml, GCP_PROJECT_ID), so
# the descriptor and the target cannot disagree. Each deploy makes a new version (so a rollback to an earlier
# tag is a new version with the old image), sends it all traffic and stops the previous one. gcloud must be
# authenticated as the environment's deployer (docs/operations.md).
set -euo pipefail

usage() {
  echo "usage: deploy/deploy.sh dev|pprd|prd TAG   (TAG: an image tag in \$IMAGE_REPOSITORY, e.g. the commit SHA)" >&2
  exit 2
}

[ "$#" -eq 2 ] || usage
env=$1
tag=$2
case "$env" in
  dev | pprd | prd) ;;
  *)
    echo "deploy.sh: unknown environment '$env'" >&2
    usage
    ;;
esac
# Docker's tag grammar: letters, digits, _ . -, not starting with . or -, at most 128 characters.
if ! [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  echo "deploy.sh: '$tag' is not an image tag" >&2
  usage
fi
if [ -z "${IMAGE_REPOSITORY:-}" ]; then
  echo "deploy.sh: set IMAGE_REPOSITORY to the image's path, e.g. europe-west1-docker.pkg.dev/PROJECT/mqtt-ingest/mqtt-ingest" >&2
  exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
descriptor="$here/appengine/$env.yml"
# The generated descriptor writes `  GCP_PROJECT_ID: name` under env_variables (src/deploy/render.ts).
project=$(sed -n 's/^  GCP_PROJECT_ID: *"\{0,1\}\([a-z0-9-]*\)"\{0,1\} *$/\1/p' "$descriptor")
if [ -z "$project" ]; then
  echo "deploy.sh: $descriptor names no GCP_PROJECT_ID" >&2
  exit 1
fi
image="$IMAGE_REPOSITORY:$tag"

# The image must exist before anything changes: a mistyped rollback tag stops here.
if ! gcloud artifacts docker images describe "$image" --quiet >/dev/null; then
  echo "deploy.sh: image $image not found; nothing was deployed" >&2
  exit 1
fi

# A version id is lower-case letters, digits and hyphens, starting with a letter, and VERSION-dot-SERVICE-dot-
# PROJECT must fit in 63 characters (the service is `default`): the time keeps ids unique, the tag readable.
stamp=$(date -u +%Y%m%d-%H%M%S)
room=$((63 - ${#project} - ${#stamp} - 20))
short=""
if [ "$room" -gt 0 ]; then
  short=$(printf '%s' "$tag" | tr 'A-Z_.' 'a-z--' | cut -c1-"$((room < 12 ? room : 12))" | sed 's/-*$//')
fi
version="v$stamp${short:+-$short}"

echo "deploying $image to $env (project $project) as version $version"
gcloud app deploy "$descriptor" \
  --project="$project" \
  --image-url="$image" \
  --version="$version" \
  --promote \
  --stop-previous-version \
  --quiet
echo "deployed $image to $env as version $version"
