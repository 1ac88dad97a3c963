/**
 * Active-active embedded nodes: two nodes, each with its own broker and spool, behind an L4 balancer (as a TCP
 * load balancer or a Kubernetes Service in front of two replicas). One is killed with SIGKILL mid-stream; its
 * publishers reconnect through the balancer to the other and MQTT.js sends again what was not acknowledged. What
 * the killed node had acknowledged but not yet delivered stays in its spool and is delivered when it comes back
 * on the same disk. Every message a publisher got a PUBACK for arrives.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AckedPublisher } from './helpers/acked-publisher.js';
import { startBalancer, type Balancer } from './helpers/balancer.js';
import { blockFileSink } from './helpers/disk.js';
import { readFileSink } from './helpers/file-output.js';
import { seqOf } from './helpers/load.js';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';

const nodes: NodeProcess[] = [];
let balancer: Balancer | undefined;
const publishers: AckedPublisher[] = [];
afterAll(async () => {
  for (const p of publishers) await p.end().catch(() => undefined);
  await balancer?.close();
  for (const n of nodes) await n.kill();
});

async function embeddedNode(name: string, dataDir?: string, mqttPort?: number): Promise<NodeProcess> {
  const dir = dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), `active-active-${name}-`));
  const node = await startNode(
    { MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', FILE_SINK_DIR: path.join(dir, 'out'), RETRY_INITIAL_DELAY_MS: '100', RETRY_MAX_DELAY_MS: '500' },
    { dataDir: dir, mqttPort },
  );
  nodes.push(node);
  await node.waitReady();
  return node;
}

const PUBLISHERS = 4;
const SPAN = 1_000_000;

describe('two embedded nodes behind an L4 balancer', () => {
  it('a node killed mid-stream: its publishers move to the other, and every acknowledged message arrives once it is back', async () => {
    let a = await embeddedNode('a');
    const b = await embeddedNode('b');
    const ports = [a.mqttPort, b.mqttPort];
    balancer = await startBalancer(() => ports);
    for (let i = 0; i < PUBLISHERS; i++) {
      publishers.push(await AckedPublisher.connect(`mqtt://127.0.0.1:${balancer.port}`, { reconnect: true, first: i * SPAN }));
    }
    // Round robin: two publishers on each node.
    expect([...balancer.given.values()]).toEqual([2, 2]);
    const acked = () => publishers.reduce((n, p) => n + p.acked.size, 0);

    // Node a keeps what it acknowledges from now on in its spool: its file sink cannot write.
    const unblock = blockFileSink(path.join(a.dataDir, 'out'));
    for (const p of publishers) p.flow(50);
    await waitFor(() => acked() >= 4_000, 30_000, '4,000 acknowledged');
    await waitFor(async () => (await a.metric('mqtt_ingest_spool_messages')) > 500, 15_000, 'node a holding messages');
    const heldByA = await a.metric('mqtt_ingest_spool_messages');

    await a.kill();
    const ackedAtKill = acked();
    // The publishers that were on a reconnect through the balancer, which skips the dead node: all on b now.
    await waitFor(() => acked() >= ackedAtKill + 6_000, 30_000, '6,000 more acknowledged after the kill');
    expect(balancer.given.get(b.mqttPort)).toBeGreaterThanOrEqual(4);
    for (const p of publishers) p.stopFlow();
    await waitFor(() => publishers.every((p) => p.acked.size === p.next - p.first), 30_000, 'every message sent acknowledged');

    // Node a back on its disk and port: what it had acknowledged is delivered.
    unblock();
    a = await embeddedNode('a', a.dataDir, ports[0]);
    for (const n of [a, b]) await waitFor(async () => (await n.metric('mqtt_ingest_spool_messages')) === 0, 30_000, 'spools drained');

    const fromA = readFileSink(path.join(a.dataDir, 'out')).map((r) => seqOf(r.payload));
    const fromB = readFileSink(path.join(b.dataDir, 'out')).map((r) => seqOf(r.payload));
    const stored = new Set([...fromA, ...fromB]);
    const missing = publishers.flatMap((p) => [...p.acked].filter((s) => !stored.has(s)));
    expect(missing).toEqual([]);
    expect(publishers.every((p) => p.refused.size === 0)).toBe(true);
    // The killed node delivered what it held; what was sent again to b after the kill is counted, not failed.
    expect(fromA.length).toBeGreaterThanOrEqual(heldByA);
    const duplicates = fromA.length + fromB.length - stored.size;
    console.log(
      `active-active: ${acked()} acknowledged (${ackedAtKill} before the kill), node a held ${heldByA} undelivered at the kill and ` +
        `delivered ${fromA.length} in all, node b ${fromB.length}; ${duplicates} sent again after the kill (duplicates)`,
    );
  });
});
