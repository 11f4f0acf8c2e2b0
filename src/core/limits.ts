/** The largest delay a Node timer takes: above it Node fires after 1 ms, so every timer and retry hint is bounded by it. */
export const MAX_TIMER_MS = 2147483647;
