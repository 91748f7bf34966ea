// JsSIP only answers MD5 digest challenges, and of several
// WWW-Authenticate / Proxy-Authenticate headers it keeps just one (its parser
// overwrites earlier ones with later ones): a server that offers SHA-256 and
// MD5 (RFC 8760) can make it give up, depending on the order. RFC 8760 says a
// client uses a challenge whose algorithm it supports, so before JsSIP parses
// a 401/407 we leave only the MD5 challenges in it.

const AUTH_HEADER = /^(www-authenticate|proxy-authenticate)\s*:/i;

function isMd5(challenge: string): boolean {
  const m = /algorithm\s*=\s*"?([A-Za-z0-9-]+)"?/i.exec(challenge);
  return !m || m[1].toUpperCase() === 'MD5';
}

export function preferMd5Challenges(raw: string): string {
  if (!/^SIP\/2\.0\s+40[17]\b/.test(raw)) return raw;
  const sep = raw.indexOf('\r\n\r\n');
  if (sep < 0) return raw;
  const head = raw.slice(0, sep).split('\r\n');
  const body = raw.slice(sep);
  const first = head.findIndex((l) => AUTH_HEADER.test(l));
  if (first < 0) return raw;
  // Expand each auth header line into one line per challenge.
  const challenges: { name: string; value: string }[] = [];
  const rest: string[] = [];
  for (const line of head) {
    const m = AUTH_HEADER.exec(line);
    if (!m) {
      rest.push(line);
      continue;
    }
    const value = line.slice(line.indexOf(':') + 1).trim();
    for (const part of value.split(/,\s*(?=Digest\s)/i)) challenges.push({ name: m[1], value: part.trim() });
  }
  const md5 = challenges.filter((c) => isMd5(c.value));
  // Nothing to choose, or nothing JsSIP could answer anyway: leave it alone.
  if (md5.length === 0 || md5.length === challenges.length) return raw;
  const lines = md5.map((c) => `${c.name}: ${c.value}`);
  rest.splice(Math.min(first, rest.length), 0, ...lines);
  return rest.join('\r\n') + body;
}
