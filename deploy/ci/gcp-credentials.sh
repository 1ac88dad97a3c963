#!/usr/bin/env bash
# Writes a Google credential configuration for a GitLab CI job, without any key file: GitLab's OIDC token
# (the job's id_tokens: GITLAB_OIDC_TOKEN) is exchanged by Google's STS for a short-lived token of the
# environment's service account through Workload Identity Federation (docs/operations.md, "CI/CD").
# Both gcloud (`gcloud auth login --cred-file`) and the client libraries (GOOGLE_APPLICATION_CREDENTIALS) read it.
#
#   deploy/ci/gcp-credentials.sh SERVICE_ACCOUNT_EMAIL OUTPUT_FILE
# Needs GCP_WIF_PROVIDER (projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER)
# and GITLAB_OIDC_TOKEN in the environment.
set -euo pipefail
if [ "$#" -ne 2 ] || [ -z "$1" ]; then
  echo "usage: deploy/ci/gcp-credentials.sh SERVICE_ACCOUNT_EMAIL OUTPUT_FILE" >&2
  exit 2
fi
: "${GCP_WIF_PROVIDER:?set GCP_WIF_PROVIDER to the resource name of the workload identity provider}"
: "${GITLAB_OIDC_TOKEN:?the job needs id_tokens: GITLAB_OIDC_TOKEN}"
sa=$1
out=$2
token_file="$(dirname "$out")/.gitlab-oidc-token"
umask 077
printf '%s' "$GITLAB_OIDC_TOKEN" > "$token_file"
cat > "$out" <<JSON
{
  "type": "external_account",
  "audience": "//iam.googleapis.com/$GCP_WIF_PROVIDER",
  "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
  "token_url": "https://sts.googleapis.com/v1/token",
  "credential_source": { "file": "$token_file" },
  "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/$sa:generateAccessToken"
}
JSON
