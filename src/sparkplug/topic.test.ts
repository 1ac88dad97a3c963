import { describe, expect, it } from 'vitest';
import { parseSparkplugTopic, sparkplugTopicText } from './topic.js';

describe('parseSparkplugTopic', () => {
  it('reads node and device topics, the device id exactly for D* types', () => {
    expect(parseSparkplugTopic('spBv1.0/plant/NBIRTH/edge1')).toEqual({ type: 'NBIRTH', group: 'plant', edgeNode: 'edge1' });
    for (const type of ['NDEATH', 'NDATA', 'NCMD']) {
      expect(parseSparkplugTopic(`spBv1.0/g/${type}/e`)).toEqual({ type, group: 'g', edgeNode: 'e' });
      expect(parseSparkplugTopic(`spBv1.0/g/${type}/e/d`)).toBeUndefined();
    }
    for (const type of ['DBIRTH', 'DDEATH', 'DDATA', 'DCMD']) {
      expect(parseSparkplugTopic(`spBv1.0/g/${type}/e/pump 1`)).toEqual({ type, group: 'g', edgeNode: 'e', device: 'pump 1' });
      expect(parseSparkplugTopic(`spBv1.0/g/${type}/e`)).toBeUndefined();
    }
  });
  it('reads a host STATE topic', () => {
    expect(parseSparkplugTopic('spBv1.0/STATE/scada-host')).toEqual({ type: 'STATE', hostId: 'scada-host' });
    expect(parseSparkplugTopic('spBv1.0/STATE')).toBeUndefined();
    // A group may be called STATE; its topics have more levels.
    expect(parseSparkplugTopic('spBv1.0/STATE/NDATA/e')).toEqual({ type: 'NDATA', group: 'STATE', edgeNode: 'e' });
  });
  it('refuses anything else', () => {
    for (const t of [
      'spBv1.0/g/NDATA/e/d/x',
      'spBv1.0/g/STATE/e',
      'spBv1.0/g/ndata/e',
      'spBv1.0/g/NDATA',
      'spBv1.0//NDATA/e',
      'spBv1.0/g/NDATA/',
      'spBv1.0/g/DDATA/e/',
      'spAv1.0/g/NDATA/e',
      'STATE/host',
      'spBv1.0/STATE/host/x',
      'spBv1.0/STATE/',
      'plant/line/temp',
      '',
    ]) {
      expect(parseSparkplugTopic(t), t).toBeUndefined();
    }
  });
  it('writes the topic back', () => {
    for (const t of ['spBv1.0/g/NBIRTH/e', 'spBv1.0/g/DDATA/e/d', 'spBv1.0/STATE/h']) expect(sparkplugTopicText(parseSparkplugTopic(t)!)).toBe(t);
  });
});
