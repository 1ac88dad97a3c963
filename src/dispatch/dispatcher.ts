import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { Sink } from '../sinks/sink.js';
import type { Spool } from '../spool/spool.js';
import { SinkRunner, type RunnerOptions } from './sink-runner.js';

/**
 * One SinkRunner per sink: each sink progresses on its own, so a slow or failing sink never delays
 * another (a row leaves the spool only when every routed sink is done with it).
 */
export class Dispatcher {
  readonly runners: SinkRunner[];

  constructor(sinks: Sink[], spool: Spool, logger: Logger, metrics: Metrics, opts: RunnerOptions) {
    this.runners = sinks.map((s) => new SinkRunner(s, spool, logger.child({ component: `sink.${s.name}` }), metrics, opts));
  }

  start(): void {
    for (const r of this.runners) r.start();
  }

  notify(): void {
    for (const r of this.runners) r.notify();
  }

  /** Stops leasing and waits for in-flight writes (bounded by timeoutMs). True when all finished. */
  async stop(timeoutMs: number): Promise<boolean> {
    const done = await Promise.all(this.runners.map((r) => r.stop(timeoutMs)));
    return done.every(Boolean);
  }

  status(): Record<string, ReturnType<SinkRunner['status']>> {
    return Object.fromEntries(this.runners.map((r) => [r.sink.name, r.status()]));
  }
}
