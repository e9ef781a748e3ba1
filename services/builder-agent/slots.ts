// SlotPool hands out the host's slot numbers, lowest free first. A slot is
// a sandbox (its own prefix and work area), so two running jobs must never
// share one; the dispatcher sends at most `slots` jobs, and a job that finds
// no free slot is an error to report, not to wait for.

/** NoFreeSlot: every slot is taken (the dispatcher sent more jobs than the agent has slots). */
export class NoFreeSlot extends Error {
  override readonly name = "NoFreeSlot";
  constructor(readonly slots: number) {
    super(`all ${slots} slots of this agent are busy`);
  }
}

export interface SlotPool {
  /** The lowest free slot, now taken. Throws NoFreeSlot. */
  acquire(): number;
  /** Gives a slot back; giving back a free one is a no-op. */
  release(slot: number): void;
  /** Slots taken now. */
  busy(): number;
}

export function createSlotPool(slots: number): SlotPool {
  const taken = new Array<boolean>(slots).fill(false);
  return {
    acquire() {
      const free = taken.indexOf(false);
      if (free === -1) throw new NoFreeSlot(slots);
      taken[free] = true;
      return free;
    },
    release(slot) {
      if (slot >= 0 && slot < slots) taken[slot] = false;
    },
    busy: () => taken.filter(Boolean).length,
  };
}
