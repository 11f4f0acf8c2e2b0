// The soak's parts, in the order they run: shutdown last, since it leaves sse() answering 503 for
// good in the process that calls it (its own server child).
export const parts = {
  churn: () => import('./churn'),
  concurrency: () => import('./concurrency'),
  slow: () => import('./slow'),
  faults: () => import('./faults'),
  hostile: () => import('./hostile'),
  review: () => import('./review'),
  redis: () => import('./redis'),
  shutdown: () => import('./shutdown'),
} as const;

export type PartName = keyof typeof parts;
