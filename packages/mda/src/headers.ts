// identity: the recipient
/** The trace headers popmda may prepend; values from the envelope are hostile. */

/** Removes what could end a header line early or smuggle another header. */
function clean(v: string): string {
  return v.replace(/[\x00-\x1f\x7f]/g, '');
}

export function headerPrefix(env: { sender?: string; recipient?: string }): Buffer | undefined {
  let s = '';
  if (env.sender !== undefined) s += `Return-Path: <${clean(env.sender)}>\n`;
  if (env.recipient) s += `Delivered-To: ${clean(env.recipient)}\n`;
  return s ? Buffer.from(s, 'utf8') : undefined;
}
