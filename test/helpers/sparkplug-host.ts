/**
 * What the host's tests build by hand: decoded payloads as the decoder hands them over (raw values, bdSeq a
 * metric named "bdSeq" with a raw longValue, datatype UInt64), observations at a spool seq, and a host on a
 * births file with its clock, its rebirth requests, its metrics and its log lines in reach.
 */
import { captureLogs } from './log-capture.js';
import { Metrics } from '../../src/core/metrics.js';
import { SparkplugNodeHost, type SparkplugHostOptions } from '../../src/sparkplug/host.js';
import type { DecodedMetric, DecodedPayload, MessageType, RawValue, SparkplugObservation } from '../../src/sparkplug/types.js';

export const GROUP = 'Plant1';
export const EDGE = 'Line4';

export function metric(m: Partial<DecodedMetric>): DecodedMetric {
  return { datatype: 0, isHistorical: false, isTransient: false, isNull: false, raw: { field: 'none' }, ...m };
}

/** A birth's metric: name, alias, datatype and a value. */
export function born(name: string, alias: number | undefined, datatype: number, raw: RawValue = { field: 'doubleValue', value: 1 }): DecodedMetric {
  return metric(alias === undefined ? { name, datatype, raw } : { name, alias: BigInt(alias), datatype, raw });
}

export function bdSeqMetric(bdSeq: number): DecodedMetric {
  return metric({ name: 'bdSeq', datatype: 8, raw: { field: 'longValue', value: BigInt(bdSeq) } });
}

export function payload(seq: number | undefined, metrics: DecodedMetric[]): DecodedPayload {
  return seq === undefined ? { metrics } : { seq: BigInt(seq), metrics };
}

/** Data by alias: each metric only its alias and a value, as Sparkplug 3.0 recommends. */
export function byAlias(...aliases: number[]): DecodedMetric[] {
  return aliases.map((a) => metric({ alias: BigInt(a), raw: { field: 'doubleValue', value: a } }));
}

export interface At {
  group?: string;
  edge?: string;
  device?: string;
}

export function observation(spoolSeq: number, type: Exclude<MessageType, 'STATE'>, p: DecodedPayload, at: At = {}): SparkplugObservation {
  const topic = { type, group: at.group ?? GROUP, edgeNode: at.edge ?? EDGE, ...(at.device === undefined ? {} : { device: at.device }) };
  return { spoolSeq, messageId: `m-${spoolSeq}-${type}`, topic, payload: p };
}

export interface Rig {
  file: string;
  host: SparkplugNodeHost;
  metrics: Metrics;
  lines: Record<string, unknown>[];
  /** The rebirth requests made, as `group/edgeNode`. */
  requests: string[];
  /** The monotonic clock the host reads; tests move it. */
  clock: { ms: number };
  /** What `oldestSpoolSeq` answers. */
  oldest: { seq: number | undefined };
}

export function openRig(file: string, options: Partial<SparkplugHostOptions> = {}): Rig {
  const { logger, lines } = captureLogs('debug');
  const metrics = new Metrics({ defaultMetrics: false });
  const requests: string[] = [];
  const clock = { ms: 1_000_000 };
  const oldest: { seq: number | undefined } = { seq: undefined };
  const host = new SparkplugNodeHost({
    file,
    spoolId: 'spool-1',
    oldestSpoolSeq: () => oldest.seq,
    requestRebirth: (group, edgeNode) => requests.push(`${group}/${edgeNode}`),
    rebirth: false,
    birthWaitMs: 30_000,
    monotonic: () => clock.ms,
    metrics,
    logger,
    ...options,
  });
  return { file, host, metrics, lines, requests, clock, oldest };
}

export async function counted(c: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  return (await c.get()).values[0]?.value ?? 0;
}

/** The log lines with this code. */
export function logged(rig: Rig, code: string): Record<string, unknown>[] {
  return rig.lines.filter((l) => l.code === code);
}
