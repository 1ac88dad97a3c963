import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { renderErrorDocs } from './errors-docs.js';
import { ConfigError, ERROR_SECTIONS, ERRORS, IngestError, isErrorCode, SpoolDamagedError, StartAbortedError, withCode } from './errors.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOCS_FILE = path.join(ROOT, 'docs', 'errors.md');

/** The rows of docs/errors.md's tables: code → [meaning, action], as written. */
function documentedRows(text: string): Map<string, [string, string]> {
  const rows = new Map<string, [string, string]>();
  for (const line of text.split('\n')) {
    const m = /^\| `([A-Z][A-Z0-9_]*)` \|(.*)\|$/.exec(line);
    if (!m) continue;
    const cells = m[2]!.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
    rows.set(m[1]!, [cells[0] ?? '', cells[1] ?? '']);
  }
  return rows;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return sourceFiles(file);
    return file.endsWith('.ts') && !file.endsWith('.test.ts') ? [file] : [];
  });
}

describe('the error catalogue', () => {
  it('has each code once, in one section, with a meaning and an action', () => {
    const inSections = ERROR_SECTIONS.flatMap((s) => Object.keys(s.codes));
    expect(new Set(inSections).size).toBe(inSections.length);
    expect(Object.keys(ERRORS).sort()).toEqual([...inSections].sort());
    for (const [code, e] of Object.entries(ERRORS)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$/);
      expect(e.meaning.trim(), code).not.toBe('');
      expect(e.action.trim(), code).not.toBe('');
      expect(`${e.meaning}${e.action}`, code).not.toContain('\n');
    }
  });

  it('keeps the codes operators and docs already rely on', () => {
    const kept = [
      'CONFIG_INVALID', 'SPOOL_FULL', 'SPOOL_CLOSED', 'SPOOL_VERSION', 'SPOOL_DAMAGED', 'SPOOL_OPEN_FAILED', 'BROKER_START_FAILED',
      'BROKER_CRASH_LOOP', 'HTTP_START_FAILED', 'SINK_START_FAILED', 'SECRET_UNAVAILABLE', 'DEPLOY_RENDER_FAILED',
      'PASSWORD_FILE_INVALID', 'ACL_FILE_INVALID', 'REQUEST_TIMEOUT',
    ];
    for (const code of kept) expect(isErrorCode(code), code).toBe(true);
    expect(isErrorCode('NO_SUCH_CODE')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
  });

  it('gives every error class its code', () => {
    expect(new ConfigError(['PORT: bad']).code).toBe('CONFIG_INVALID');
    expect(new SpoolDamagedError('gone', {}).code).toBe('SPOOL_DAMAGED');
    const aborted = new StartAbortedError();
    expect(aborted).toBeInstanceOf(IngestError);
    expect([aborted.code, aborted.name, aborted.message]).toEqual(['START_ABORTED', 'StartAbortedError', 'start-up interrupted by a stop request']);
  });

  it('puts the code first in a log line', () => {
    expect(Object.keys(withCode('MESSAGE_DEAD_LETTERED', { sink: 'file', reason: 'corrupt' }))).toEqual(['code', 'sink', 'reason']);
    expect(withCode('START_FAILED')).toEqual({ code: 'START_FAILED' });
  });

  it('has every code a source file logs or throws as a literal', () => {
    const literal = /\bcode: '([A-Z][A-Z0-9]*_[A-Z0-9_]+)'|\b(?:withCode|super|new [A-Za-z]*Error)\(\s*'([A-Z][A-Z0-9]*_[A-Z0-9_]+)'/g;
    const unknown: string[] = [];
    for (const file of sourceFiles(path.join(ROOT, 'src'))) {
      for (const m of readFileSync(file, 'utf8').matchAll(literal)) {
        const code = m[1] ?? m[2]!;
        if (!isErrorCode(code)) unknown.push(`${path.relative(ROOT, file)}: ${code}`);
      }
    }
    expect(unknown).toEqual([]);
  });
});

describe('docs/errors.md', () => {
  const committed = (() => {
    try {
      return readFileSync(DOCS_FILE, 'utf8');
    } catch {
      return ''; // a missing file fails below, with what to do
    }
  })();
  const rows = documentedRows(committed);
  const regenerate = 'regenerate it: npm run build && node bin/mqtt-ingest.js docs errors > docs/errors.md';

  it('documents every code of the table, and no other', () => {
    const table = Object.keys(ERRORS);
    expect(table.filter((code) => !rows.has(code)), `codes missing from docs/errors.md; ${regenerate}`).toEqual([]);
    expect([...rows.keys()].filter((code) => !isErrorCode(code)), `codes in docs/errors.md that the table does not have; ${regenerate}`).toEqual([]);
  });

  it('says what each code means and what to do as the table does', () => {
    const differing = Object.entries(ERRORS)
      .filter(([code, e]) => rows.has(code) && (rows.get(code)![0] !== e.meaning || rows.get(code)![1] !== e.action))
      .map(([code]) => code);
    expect(differing, `codes whose meaning or action differs in docs/errors.md; ${regenerate}`).toEqual([]);
  });

  it('is what the table renders', () => {
    // A plain comparison, not toEqual, so the failure says what to do rather than printing both files.
    expect(committed === renderErrorDocs(), `docs/errors.md is stale; ${regenerate}`).toBe(true);
  });
});
