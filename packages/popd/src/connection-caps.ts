// identity: root
/**
 * Connection caps: a global one (-m) and one per network (-M; an IPv4
 * address or an IPv6 /64, see addressPrefix). Connections are counted from
 * accept until authpop reports them closed, or until popd evicts one to make
 * room (it then no longer counts: its socket is on its way out).
 */
type Admission = 'ok' | 'total' | 'network';

export class ConnectionCaps {
  /** Every counted connection and its network, oldest first. */
  private readonly byId = new Map<string, string>();
  /** Each network's connections, oldest first. */
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

  /** The network's cap first: making room there makes room in all too. */
  admit(net: string): Admission {
    if ((this.byNet.get(net)?.size ?? 0) >= this.maxPerNet) return 'network';
    if (this.byId.size >= this.maxConn) return 'total';
    return 'ok';
  }

  /** The oldest connection (of net, or of anyone when net is null) that may go; null when none may. */
  oldest(net: string | null, mayGo: (id: string) => boolean): string | null {
    for (const id of net === null ? this.byId.keys() : (this.byNet.get(net) ?? [])) if (mayGo(id)) return id;
    return null;
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
