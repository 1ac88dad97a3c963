import { describe, expect, it } from 'vitest';
import mqttPacket from 'mqtt-packet';
import { encodeAcks } from './encode-acks.js';

describe('encodeAcks', () => {
  it.each([4, 5] as const)('writes what mqtt-packet generates, in order (MQTT %i)', (protocolVersion) => {
    const groups = [
      { ids: [1, 0x1234, 65535], qos: [1, 1, 2] as (1 | 2)[] },
      { ids: [256], qos: [1] as (1 | 2)[] },
    ];
    const expected = Buffer.concat(
      groups.flatMap((g) =>
        g.ids.map((messageId, i) => mqttPacket.generate({ cmd: g.qos[i] === 1 ? 'puback' : 'pubrec', messageId }, { protocolVersion })),
      ),
    );
    expect(encodeAcks(groups, protocolVersion).equals(expected)).toBe(true);

    // And mqtt-packet reads them back as the same packets.
    const parsed: { cmd: string; messageId?: number }[] = [];
    const parser = mqttPacket.parser({ protocolVersion });
    parser.on('packet', (p) => parsed.push({ cmd: p.cmd, messageId: (p as { messageId?: number }).messageId }));
    parser.parse(encodeAcks(groups, protocolVersion));
    expect(parsed).toEqual([
      { cmd: 'puback', messageId: 1 },
      { cmd: 'puback', messageId: 0x1234 },
      { cmd: 'pubrec', messageId: 65535 },
      { cmd: 'puback', messageId: 256 },
    ]);
  });
});
