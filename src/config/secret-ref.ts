/**
 * Secret Manager references: `sm://projects/PROJECT/secrets/SECRET/versions/VERSION`.
 *
 * App Engine flexible cannot mount secret files, so a secret key (MQTT_PASSWORD) or a file key (a certificate,
 * a password file) may name a Secret Manager secret version instead of holding the value or a path. This module
 * only reads the form of a reference: `check-config` stays offline. `secrets.ts` fetches the values at `run`.
 */
import { SECRET_REF_PREFIX } from '../core/settings/key.js';
import { keyMeta, type ConfigKey } from './schema.js';

export { looksLikeSecretRef, SECRET_REF_PREFIX } from '../core/settings/key.js';

/** A parsed reference. `name` is the resource name the Secret Manager API takes. */
export interface SecretRef {
  project: string;
  secret: string;
  version: string;
  /** `projects/P/secrets/S/versions/V` */
  name: string;
  /** `projects/P/secrets/S`: the resource whose IAM policy grants access. */
  secretName: string;
}


/** The form, as a problem message shows it. */
export const SECRET_REF_FORM = 'sm://projects/PROJECT/secrets/SECRET/versions/VERSION (VERSION a number or "latest")';

// Project ids are 6-30 characters (lower case letters, digits, hyphens); a project number is digits. Secret ids are
// 1-255 of letters, digits, "-" and "_" (cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets).
const PROJECT = '[a-z][a-z0-9-]{4,28}[a-z0-9]|\\d{1,20}';
const SECRET = '[A-Za-z0-9_-]{1,255}';
const VERSION = 'latest|[1-9]\\d{0,18}';
const REF = new RegExp(`^sm://projects/(${PROJECT})/secrets/(${SECRET})/versions/(${VERSION})$`);

/** The parsed reference, or undefined when the form is wrong. */
export function parseSecretRef(value: string): SecretRef | undefined {
  const m = REF.exec(value.trim());
  if (!m) return undefined;
  const [, project, secret, version] = m as unknown as [string, string, string, string];
  const secretName = `projects/${project}/secrets/${secret}`;
  return { project, secret, version, secretName, name: `${secretName}/versions/${version}` };
}

export function formatSecretRef(ref: SecretRef): string {
  return `${SECRET_REF_PREFIX}${ref.name}`;
}

/** Keys that accept a reference: those holding a secret value and those naming a file to read. */
export function acceptsSecretRef(name: ConfigKey): boolean {
  const meta = keyMeta(name);
  return meta.secret === true || meta.file === true;
}

/**
 * The reference of a config value that starts with sm://, or undefined after adding a problem (wrong form, or a
 * key that takes no secrets). `where` names the layer, as the loader's other problems do.
 */
export function readSecretRef(name: ConfigKey, raw: string, where: string, problems: string[]): SecretRef | undefined {
  if (!acceptsSecretRef(name)) {
    problems.push(`${name}: a Secret Manager reference is accepted only by secret and file keys${where}`);
    return undefined;
  }
  const ref = parseSecretRef(raw);
  // The reference names a secret; it is not the secret, so showing it helps and leaks nothing.
  if (!ref) problems.push(`${name}: must be a Secret Manager reference ${SECRET_REF_FORM}, got ${JSON.stringify(raw)}${where}`);
  return ref;
}
