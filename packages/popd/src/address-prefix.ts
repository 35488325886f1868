// identity: root
/**
 * The network a peer address stands for, as popd counts it for -M and for
 * the login budget: an IPv4 address itself (/32), an IPv6 address's /64 (one
 * site or host is given a whole /64, so per-address counting would let it
 * use 2^64 addresses), an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as its
 * IPv4 address.
 */
import net from 'node:net';

/** The eight 16-bit groups of text that net.isIPv6 accepts (a zone, an IPv4 tail and "::" allowed). */
function groups6(address: string): number[] {
  let s = address.replace(/%.*$/, '');
  const tail: number[] = [];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    tail.push((a << 8) | b, (c << 8) | d);
    s = s.slice(0, v4.index);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const hex = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  const gap = s.indexOf('::');
  if (gap === -1) return [...hex(s), ...tail];
  const head = hex(s.slice(0, gap));
  const rest = [...hex(s.slice(gap + 2)), ...tail];
  return [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
}

/** "192.0.2.7", or "2001:db8:0:1::/64"; anything that is not an IP address is its own key. */
export function addressPrefix(address: string): string {
  if (!net.isIPv6(address)) return address;
  const g = groups6(address);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `${g[6] >> 8}.${g[6] & 0xff}.${g[7] >> 8}.${g[7] & 0xff}`;
  return `${g
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(':')}::/64`;
}
