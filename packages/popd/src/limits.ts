// identity: root
/** Connection caps: a global one and one per peer address. Connections are counted from accept until authpop reports them closed. */
export type Admission = 'ok' | 'total' | 'address';

export class ConnLimits {
  private readonly byId = new Map<string, string>();
  private readonly perAddr = new Map<string, number>();

  constructor(
    private readonly maxConn: number,
    private readonly maxPerAddr: number,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  admit(address: string): Admission {
    if (this.byId.size >= this.maxConn) return 'total';
    if ((this.perAddr.get(address) ?? 0) >= this.maxPerAddr) return 'address';
    return 'ok';
  }

  add(id: string, address: string): void {
    this.byId.set(id, address);
    this.perAddr.set(address, (this.perAddr.get(address) ?? 0) + 1);
  }

  remove(id: string): void {
    const address = this.byId.get(id);
    if (address === undefined) return;
    this.byId.delete(id);
    const n = (this.perAddr.get(address) ?? 1) - 1;
    if (n === 0) this.perAddr.delete(address);
    else this.perAddr.set(address, n);
  }

  clear(): void {
    this.byId.clear();
    this.perAddr.clear();
  }
}
