/**
 * Connection caps: a global one (-m) and one per network (-M; an IPv4
 * address or an IPv6 /64, see addressPrefix). Connections are counted from
 * accept until authpop reports them closed.
 */
export type Admission = 'ok' | 'total' | 'network';

export class ConnLimits {
  /** Every counted connection and its network. */
  private readonly byId = new Map<string, string>();
  /** Each network's connections. */
  private readonly byNet = new Map<string, Set<string>>();

  constructor(
    private readonly maxConn: number,
    private readonly maxPerNet: number,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  netOf(id: string): string | undefined {
    return this.byId.get(id);
  }

  admit(net: string): Admission {
    if ((this.byNet.get(net)?.size ?? 0) >= this.maxPerNet) return 'network';
    if (this.byId.size >= this.maxConn) return 'total';
    return 'ok';
  }

  add(id: string, net: string): void {
    this.byId.set(id, net);
    const ids = this.byNet.get(net);
    if (ids) ids.add(id);
    else this.byNet.set(net, new Set([id]));
  }

  remove(id: string): void {
    const net = this.byId.get(id);
    if (net === undefined) return;
    this.byId.delete(id);
    const ids = this.byNet.get(net)!;
    ids.delete(id);
    if (ids.size === 0) this.byNet.delete(net);
  }
}
