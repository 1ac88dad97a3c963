/**
 * The deadline of POST /leave (node-leave.ts does the leave): parsed here, at the HTTP edge, and bounded the same
 * way by `mqtt-ingest leave --deadline` (cli/leave.ts).
 */
/** Longest deadline a leave takes: a day. */
export const MAX_LEAVE_DEADLINE_SECONDS = 86_400;

/** A leave's deadline from `?deadlineSeconds=`: a whole number of seconds, 1 to a day; default 600. */
export function parseDeadlineSeconds(raw: string | null): number | string {
  if (raw === null || raw === '') return 600;
  if (!/^\d+$/.test(raw)) return `deadlineSeconds must be a whole number of seconds, not ${JSON.stringify(raw)}`;
  const n = Number(raw);
  if (n < 1 || n > MAX_LEAVE_DEADLINE_SECONDS) return `deadlineSeconds must be 1 to ${MAX_LEAVE_DEADLINE_SECONDS}, not ${n}`;
  return n;
}
