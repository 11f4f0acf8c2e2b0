// One interval per heartbeat period for the whole process, not one timer per stream:
// idle connections then cost no timer each, and the interval stops when its last stream closes.

/** Internal: set on every write of a stream, cleared by the scheduler's ticks. */
export const active = Symbol('sse-guard.active');
/** Internal: writes a heartbeat comment. */
export const beat = Symbol('sse-guard.beat');

/**
 * What the scheduler needs of a stream. Symbol-keyed members of the stream itself, rather than an
 * object and a closure per stream: with idle streams held by the ten thousand, those are ~130 bytes
 * of heap each (bench/README.md, scenario C).
 */
export interface Beating {
  [active]: boolean;
  [beat](): void;
}

const groups = new Map<number, { timer: NodeJS.Timeout; members: Set<Beating> }>();

// Ticks come every half period. A stream written to since the last tick is only marked idle;
// one idle for a whole tick gets a heartbeat. So an idle stream beats once per period, and no
// stream stays silent for a full period.
function tick(members: Set<Beating>): void {
  for (const member of members) {
    if (member[active]) member[active] = false;
    else member[beat]();
  }
}

export function startHeartbeat(period: number, member: Beating): void {
  let group = groups.get(period);
  if (group === undefined) {
    const members = new Set<Beating>();
    const timer = setInterval(tick, Math.max(1, Math.floor(period / 2)), members);
    timer.unref();
    group = { timer, members };
    groups.set(period, group);
  }
  group.members.add(member);
}

export function stopHeartbeat(period: number, member: Beating): void {
  const group = groups.get(period);
  if (group === undefined || !group.members.delete(member) || group.members.size > 0) return;
  clearInterval(group.timer);
  groups.delete(period);
}
