// Maps how a call ended (JsSIP cause, SIP status, who ended it) to words an
// agent understands.
import type { Key } from '../i18n';

export interface Reason {
  key: Key;
  vars?: Record<string, string | number>;
}

export interface EndInfo {
  originator: 'local' | 'remote' | 'system';
  cause: string;
  statusCode: number | null;
  /** The call had been answered (a normal hang-up, not a failure). */
  answered: boolean;
  /** The call was incoming. */
  incoming: boolean;
  /** The callee's phone had rung (180/183 seen) before the call failed. */
  rang?: boolean;
}

export function reasonFor(info: EndInfo): Reason {
  const { originator, cause, statusCode, answered, incoming, rang = false } = info;
  if (answered) {
    if (cause === 'RTP Timeout') return { key: 'reason.rtpTimeout' };
    if (cause === 'Connection Error' || cause === 'Request Timeout') return { key: 'reason.connection' };
    return { key: originator === 'local' ? 'reason.hangupLocal' : 'reason.hangupRemote' };
  }
  if (statusCode !== null) {
    if (statusCode === 486 || statusCode === 600) return { key: 'reason.busy' };
    if (statusCode === 603) return { key: 'reason.rejected' };
    // The PBX answers 480 both for "not registered" and for a ring timeout;
    // if the phone had already rung, nobody picked it up.
    if (statusCode === 480) return { key: rang ? 'reason.noAnswer' : 'reason.unavailable' };
    if (statusCode === 404 || statusCode === 604) return { key: 'reason.notFound' };
    if (statusCode === 408) return { key: 'reason.noAnswer' };
    if (statusCode === 487) return { key: incoming ? 'reason.remoteCancelled' : 'reason.cancelled' };
    if (statusCode === 484) return { key: 'reason.incomplete' };
    if (statusCode === 488 || statusCode === 606) return { key: 'reason.media' };
    if (statusCode === 403) return { key: 'reason.forbidden' };
    if (statusCode >= 500) return { key: 'reason.serverError', vars: { code: statusCode } };
  }
  switch (cause) {
    case 'Busy':
      return { key: 'reason.busy' };
    case 'Rejected':
      if (originator === 'local') return { key: incoming ? 'reason.rejectedLocal' : 'reason.hangupLocal' };
      return { key: 'reason.rejected' };
    case 'Unavailable':
      return { key: 'reason.unavailable' };
    case 'Not Found':
      return { key: 'reason.notFound' };
    case 'No Answer':
    case 'Expires':
      return { key: 'reason.noAnswer' };
    case 'Canceled':
      if (originator === 'local') return { key: 'reason.cancelled' };
      return { key: incoming ? 'reason.remoteCancelled' : 'reason.cancelled' };
    case 'Address Incomplete':
      return { key: 'reason.incomplete' };
    case 'Incompatible SDP':
    case 'Missing SDP':
    case 'Bad Media Description':
    case 'WebRTC Error':
      return { key: 'reason.media' };
    case 'User Denied Media Access':
      return { key: 'reason.micDenied' };
    case 'Authentication Error':
      return { key: 'reason.auth' };
    case 'Connection Error':
      return { key: 'reason.connection' };
    case 'Request Timeout':
      return { key: 'reason.timeout' };
    case 'RTP Timeout':
      return { key: 'reason.rtpTimeout' };
    case 'Terminated':
    case 'BYE':
      return { key: originator === 'local' ? 'reason.hangupLocal' : 'reason.hangupRemote' };
    default:
      return { key: 'reason.other', vars: { cause: statusCode ? `${statusCode} ${cause}` : cause } };
  }
}
