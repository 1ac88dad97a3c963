/**
 * What a retryable failure says about the destination, in the words of a sink's status:
 * - failing: a person must fix something (missing topic or table, permission, credentials, schema mismatch);
 * - degraded: transient (outage, throttling, timeouts); the dispatcher's backoff rides it out.
 */
export type DestinationHealth = 'failing' | 'degraded';

/**
 * What a sink answers for each message of a batch (ARCHITECTURE §5: "every sink answers per message").
 * - delivered: the destination has it; the spool may forget it for this sink.
 * - retryable: try again later with backoff (outage, throttling, a neighbour's failure). `health` says that the
 *   destination itself has a problem, and `detail` then carries what an operator needs to know or do; without it
 *   the message only waits its turn (held back behind a failed neighbour, stopped by a refused one).
 * - rejected: it can never be delivered as it is; it goes to the dead-letter store with the reason.
 */
export type DeliveryOutcome =
  | { kind: 'delivered' }
  | { kind: 'retryable'; reason: string; detail?: string; health?: DestinationHealth }
  | { kind: 'rejected'; reason: string; detail: string };

export const delivered: DeliveryOutcome = Object.freeze({ kind: 'delivered' });

export function retryable(reason: string, detail?: string, health?: DestinationHealth): DeliveryOutcome {
  return health ? { kind: 'retryable', reason, detail, health } : { kind: 'retryable', reason, detail };
}

export function rejected(reason: string, detail: string): DeliveryOutcome {
  return { kind: 'rejected', reason, detail };
}
