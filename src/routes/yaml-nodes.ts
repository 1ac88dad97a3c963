/**
 * The routes file is checked on its YAML nodes rather than on plain values, so that each problem can give the
 * line it is on. These read a node as a mapping, a list, text or a boolean, following aliases.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

export interface Problem {
  line?: number;
  /** The route it is about: `route "pressure"` by name, or `routes[2]` when the name is missing or unusable. */
  route?: string;
  /** The key inside the route (or the file's top level), `fields.bar.type`. */
  key?: string;
  message: string;
}

export class NodeReader {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
    readonly problems: Problem[],
  ) {}

  resolve(node: unknown): Node | null {
    if (isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return (node as Node | null) ?? null;
  }

  line(node: unknown): number | undefined {
    const range = (node as Node | null)?.range;
    return range ? this.lines.linePos(range[0]).line : undefined;
  }

  /** The entries of a mapping with text keys, in order; undefined when the node is not a mapping. */
  entries(node: unknown): { key: string; keyNode: unknown; value: Node | null }[] | undefined {
    const n = this.resolve(node);
    if (!isMap(n)) return undefined;
    return n.items.map((pair) => {
      const k = this.resolve(pair.key);
      return { key: isScalar(k) ? String(k.value) : String(k), keyNode: pair.key, value: this.resolve(pair.value) };
    });
  }

  items(node: unknown): Node[] | undefined {
    const n = this.resolve(node);
    return isSeq(n) ? n.items.map((item) => this.resolve(item)).filter((item): item is Node => item !== null) : undefined;
  }

  scalar(node: unknown): unknown {
    const n = this.resolve(node);
    return isScalar(n) ? n.value : n === null ? null : undefined;
  }

  text(node: unknown): string | undefined {
    const v = this.scalar(node);
    return typeof v === 'string' ? v : undefined;
  }

  /** What a value is, for a problem that wanted another kind. */
  kind(node: unknown): string {
    const n = this.resolve(node);
    if (isMap(n)) return 'a mapping';
    if (isSeq(n)) return 'a list';
    const v = this.scalar(n);
    if (v === null) return 'empty';
    return JSON.stringify(v) ?? String(v);
  }
}
