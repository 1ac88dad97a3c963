/**
 * The report of `mqtt-ingest provision` as it prints it on stdout (src/deploy/provision.ts makes it): one line per
 * resource, then one per permission, then `done` or `NOT READY` with what is missing.
 */
import type { ProvisionReport } from './provision.js';

/** The report as the command prints it. */
export function formatReport(report: ProvisionReport, opts: { dryRun: boolean; identity: string }): string {
  const lines: string[] = [];
  if (opts.dryRun) lines.push('dry run: nothing is created');
  for (const s of report.steps) lines.push(`${s.state.padEnd(12)} ${s.what}${s.detail ? `: ${s.detail}` : ''}`);
  lines.push(`permissions of ${opts.identity}:`);
  if (report.permissions.length === 0) lines.push('  (nothing to check)');
  for (const p of report.permissions) lines.push(`  ${p.state.padEnd(11)} ${p.permission} on ${p.resource}${p.detail ? ` (${p.detail})` : ''}`);
  const missing = report.permissions.filter((p) => p.state === 'missing');
  const unchecked = report.permissions.filter((p) => p.state === 'not checked');
  const failed = report.steps.filter((s) => s.state === 'failed' || s.state === 'differs');
  if (report.ok) {
    lines.push(unchecked.length ? `done; ${unchecked.length} permission(s) could not be checked here` : 'done');
  } else {
    const parts = [missing.length ? `missing: ${[...new Set(missing.map((p) => p.permission))].join(', ')}` : '', failed.length ? `${failed.length} step(s) failed` : ''];
    lines.push(`NOT READY: ${parts.filter(Boolean).join('; ')}`);
  }
  return `${lines.join('\n')}\n`;
}
