/**
 * Topic templates: an MQTT topic filter whose levels may also be `{name}`, which matches one level like `+` and
 * captures it. Templates are parsed once; matching splits the topic once and walks the levels. Also the
 * `{name}` templates of ordering keys, and whether one template catches every topic another one does.
 */
import { topicFilterProblem } from '../core/mqtt-topic.js';
import { MAX_ORDERING_KEY_BYTES } from '../sinks/pubsub/outgoing.js';

export type Level =
  | { kind: 'literal'; text: string }
  | { kind: 'variable'; name: string }
  | { kind: 'plus' }
  | { kind: 'hash' };

export interface TopicTemplate {
  text: string;
  levels: readonly Level[];
  /** The captured names, in topic order. */
  variables: readonly string[];
  /** The template as a regular expression on the topic name, one group per variable (see compile). */
  pattern: RegExp;
}

/** Topic variables and field names become BigQuery columns and attribute names: the column rules apply. */
const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,299}$/;
// cloud.google.com/bigquery/docs/schemas#column_names; __proto__ would be no name in the objects rows are made of.
const RESERVED_PREFIXES = ['_table_', '_file_', '_partition', '_row_timestamp', '__root__', '_colidentifier', '_change_sequence_number', '_change_type', '__proto__'];

/** Why a variable or field name cannot be a column, or undefined when it can. */
export function columnNameProblem(name: string): string | undefined {
  if (!NAME_PATTERN.test(name)) return 'is not a column name: letters, digits and "_", not starting with a digit, at most 300';
  const reserved = RESERVED_PREFIXES.find((p) => name.toLowerCase().startsWith(p));
  return reserved ? `starts with ${reserved}, which BigQuery reserves` : undefined;
}

/** The template, or why it is refused (worded to follow the template in a problem). */
export function parseTopicTemplate(text: string): { template: TopicTemplate } | { problem: string } {
  const levels: Level[] = [];
  const variables: string[] = [];
  for (const level of text.split('/')) {
    if (level.includes('{') || level.includes('}')) {
      const m = /^\{([^{}]*)\}$/.exec(level);
      if (!m) return { problem: `has ${JSON.stringify(level)}: a variable is a whole level, written {name}` };
      const name = m[1]!;
      const why = columnNameProblem(name);
      if (why) return { problem: `has the variable {${name}}, which ${why}` };
      if (variables.includes(name)) return { problem: `captures {${name}} twice` };
      variables.push(name);
      levels.push({ kind: 'variable', name });
    } else if (level === '+') levels.push({ kind: 'plus' });
    else if (level === '#') levels.push({ kind: 'hash' });
    else levels.push({ kind: 'literal', text: level });
  }
  const filter = levels.map((l) => (l.kind === 'variable' ? '+' : l.kind === 'literal' ? l.text : l.kind === 'plus' ? '+' : '#')).join('/');
  if (filter.startsWith('$share/')) return { problem: 'is a shared subscription: a route matches topic names, not $share/ filters' };
  const why = topicFilterProblem(filter);
  if (why) return { problem: why };
  return { template: { text, levels, variables, pattern: compile(levels) } };
}

/**
 * One regular expression per template, made once: matching a topic is then one native call, with no split of the
 * topic into levels and no object for a route it does not match. A level is `[^/]*` (MQTT allows empty levels), a
 * trailing `#` also matches the parent (`a/#` matches `a`), and a first level that is not literal refuses a topic
 * starting with `$` (MQTT-4.7.2-1).
 */
function compile(levels: readonly Level[]): RegExp {
  let source = '';
  levels.forEach((level, i) => {
    const sep = i === 0 ? '' : '/';
    if (level.kind === 'hash') source += i === 0 ? '.*' : '(?:/.*)?';
    else if (level.kind === 'literal') source += sep + level.text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else source += sep + (level.kind === 'variable' ? '([^/]*)' : '[^/]*');
  });
  const noDollar = levels[0] && levels[0].kind !== 'literal' ? '(?!\\$)' : '';
  return new RegExp(`^${noDollar}${source}$`, 's');
}

/**
 * The variables a topic name gives the template, or undefined when it does not match. As in MQTT, a wildcard
 * first level does not match a topic starting with `$` (MQTT-4.7.2-1), and `a/#` matches `a` itself.
 */
export function matchTopic(template: TopicTemplate, topic: string): Record<string, string> | undefined {
  const m = template.pattern.exec(topic);
  if (!m) return undefined;
  const variables: Record<string, string> = {};
  for (let i = 0; i < template.variables.length; i++) variables[template.variables[i]!] = m[i + 1]!;
  return variables;
}

/** True when every topic `later` matches, `earlier` matches too: then a route with `later` after it never matches. */
export function covers(earlier: TopicTemplate, later: TopicTemplate): boolean {
  const a = earlier.levels;
  const b = later.levels;
  const dollar = (l: Level | undefined) => l?.kind === 'literal' && l.text.startsWith('$');
  if (a[0] && a[0].kind !== 'literal' && dollar(b[0])) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    if (x.kind === 'hash') return true; // also when `later` ended one level before (a/# matches a)
    const y = b[i];
    if (y === undefined || y.kind === 'hash') return false;
    if (x.kind === 'literal' && (y.kind !== 'literal' || y.text !== x.text)) return false;
  }
  return a.length === b.length;
}

/** A template of text and `{name}` parts: an ordering key. */
export type KeyTemplate = { text: string; parts: readonly ({ literal: string } | { variable: string })[] };

/** The key template, or why it is refused. */
export function parseKeyTemplate(text: string): { template: KeyTemplate } | { problem: string } {
  const parts: KeyTemplate['parts'][number][] = [];
  const re = /\{([^{}]*)\}|([^{}]+)|([{}])/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[3] !== undefined) return { problem: `has an unpaired ${JSON.stringify(m[3])}: variables are written {name}` };
    if (m[2] !== undefined) parts.push({ literal: m[2] });
    else parts.push({ variable: m[1]! });
  }
  return { template: { text, parts } };
}

/** A route's Pub/Sub ordering key from its template, or why Pub/Sub would refuse it (longer than it takes). */
export function orderingKey(template: KeyTemplate | undefined, values: Readonly<Record<string, string>>): { key?: string } | { problem: string } {
  if (!template) return {};
  const key = renderKey(template, values);
  const bytes = Buffer.byteLength(key);
  return bytes > MAX_ORDERING_KEY_BYTES ? { problem: `ordering key: ${bytes} bytes; Pub/Sub takes at most ${MAX_ORDERING_KEY_BYTES}` } : { key };
}

export function renderKey(template: KeyTemplate, values: Readonly<Record<string, string>>): string {
  let out = '';
  for (const part of template.parts) out += 'literal' in part ? part.literal : values[part.variable]!;
  return out;
}
