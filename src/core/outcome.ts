/**
 * What a sink answers for each message of a batch (ARCHITECTURE §5: "every sink answers per message").
 * - delivered: the destination has it; the spool may forget it for this sink.
 * - retryable: try again later with backoff (outage, throttling, a neighbour's failure).
 * - rejected: it can never be delivered as it is; it goes to the dead-letter store with the reason.
 */
export type DeliveryOutcome =
  | { kind: 'delivered' }
  | { kind: 'retryable'; reason: string; detail?: string }
  | { kind: 'rejected'; reason: string; detail: string };

export const delivered: DeliveryOutcome = Object.freeze({ kind: 'delivered' });

export function retryable(reason: string, detail?: string): DeliveryOutcome {
  return { kind: 'retryable', reason, detail };
}

export function rejected(reason: string, detail: string): DeliveryOutcome {
  return { kind: 'rejected', reason, detail };
}
